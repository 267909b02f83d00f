"""Retention and evidence: purge old conversations, export one conversation.

Support conversations hold personal data; keeping them forever is a liability.
``purge`` removes every conversation whose last activity is older than the
retention period - the Rasa tracker, its handoff record and post-handoff lines,
its tickets, the REST outbox and the channels' per-customer memory - and trims
the event streams to the same age. A conversation still waiting for or held
by an agent is never purged: its case is open.

``export`` writes one conversation as JSON and as readable HTML for a dispute
or a data request, personal values masked (common.redaction), with a SHA-256
of the JSON content so a copy can be checked later (``verify``).

The key layout is the one the tracker store (common/tracker_keys.py), the queue
(handoff/queue.py) and the tickets (handoff/tickets.py) document.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.redaction import redact_value
from common.tracker_keys import events_key, window_key
from handoff.history import history_from_events

logger = logging.getLogger(__name__)

# streams trimmed to the retention period (MINID), relative to the prefix
STREAMS = ("rasa:events", "handoff:requests", "handoff:events", "channel:failures", "analytics:unanswered")
# per-customer keys the channels keep, relative to the prefix; {id} is the conversation
CUSTOMER_KEYS = (
    "rest:outbox:{id}",
    "wechat:language:{id}",
    "wechat:choices:{id}",
    "telegram:language:{id}",
    "handoff:conv:{id}",
    "handoff:lines:{id}",
    "handoff:active:{id}",
)
OPEN_STATES = ("waiting", "active")


@dataclass
class PurgeReport:
    cutoff: str
    conversations: list[str] = field(default_factory=list)
    kept_open: list[str] = field(default_factory=list)
    tickets: int = 0
    stream_entries: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        return (
            f"{verb} {len(self.conversations)} conversations, {self.tickets} tickets and "
            f"{self.stream_entries} stream entries older than {self.cutoff}; "
            f"kept {len(self.kept_open)} with an open handoff"
        )


def _decoded(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _last_activity(client: Any, prefix: str, conversation_id: str) -> float | None:
    raw = await client.lindex(events_key(prefix, conversation_id), -1)
    if raw is None:
        return None
    try:
        return float(json.loads(raw).get("timestamp") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0.0  # an unreadable last event: as old as it gets


async def _conversation_ids(client: Any, prefix: str) -> list[str]:
    ids = []
    pattern = f"{prefix}:tracker:*:events"
    async for key in client.scan_iter(match=pattern, count=500):
        text = _decoded(key)
        ids.append(text[len(prefix) + len(":tracker:") : -len(":events")])
    return ids


async def purge(
    client: Any, prefix: str, days: float, now: float | None = None, dry_run: bool = False
) -> PurgeReport:
    """Remove what is older than ``days``; ``client`` is a redis.asyncio client of the stack's Redis."""
    if days <= 0:
        raise ValueError("retention must be a positive number of days")
    now = time.time() if now is None else now
    cutoff = now - days * 86400
    report = PurgeReport(datetime.fromtimestamp(cutoff, tz=timezone.utc).isoformat(timespec="seconds"))
    report.dry_run = dry_run
    for conversation_id in await _conversation_ids(client, prefix):
        last = await _last_activity(client, prefix, conversation_id)
        if last is None or last >= cutoff:
            continue
        state = await client.hget(f"{prefix}:handoff:conv:{conversation_id}", "state")
        if state is not None and _decoded(state) in OPEN_STATES:
            report.kept_open.append(conversation_id)
            continue
        report.conversations.append(conversation_id)
        if not dry_run:
            keys = [events_key(prefix, conversation_id), window_key(prefix, conversation_id)]
            keys += [f"{prefix}:{pattern.format(id=conversation_id)}" for pattern in CUSTOMER_KEYS]
            await client.delete(*keys)
    report.tickets = await _purge_tickets(client, prefix, cutoff, set(report.conversations), dry_run)
    minimum_id = f"{int(cutoff * 1000)}-0"
    for stream in STREAMS:
        key = f"{prefix}:{stream}"
        if dry_run:
            report.stream_entries += len(await client.xrange(key, "-", f"({minimum_id}", count=100_000))
        else:
            report.stream_entries += int(await client.xtrim(key, minid=minimum_id, approximate=False) or 0)
    logger.info("retention: %s", report.summary())
    return report


async def _purge_tickets(client: Any, prefix: str, cutoff: float, purged: set[str], dry_run: bool) -> int:
    """Tickets created before the cutoff, and every ticket of a purged conversation."""
    order = f"{prefix}:handoff:ticket-order"
    old = {_decoded(t) for t in await client.zrangebyscore(order, "-inf", f"({cutoff}")}
    if purged:
        for ticket_id, raw in (await client.hgetall(f"{prefix}:handoff:tickets")).items():
            try:
                if json.loads(raw).get("conversation_id") in purged:
                    old.add(_decoded(ticket_id))
            except (ValueError, AttributeError):
                continue
    if old and not dry_run:
        await client.hdel(f"{prefix}:handoff:tickets", *old)
        await client.zrem(order, *old)
    return len(old)


# -- export -------------------------------------------------------------------------------------


def _iso(timestamp: Any) -> str | None:
    try:
        return datetime.fromtimestamp(float(timestamp), tz=timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return None


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the document without its own hash, serialised canonically."""
    body = {k: v for k, v in document.items() if k != "sha256"}
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def collect(client: Any, prefix: str, conversation_id: str) -> dict[str, Any] | None:
    """Everything stored about one conversation, masked; None if nothing is."""
    raws = await client.lrange(events_key(prefix, conversation_id), 0, -1)
    events = []
    for raw in raws:
        try:
            events.append(json.loads(raw))
        except ValueError:
            continue
    handoff = await client.hgetall(f"{prefix}:handoff:conv:{conversation_id}")
    lines = [
        json.loads(raw) for raw in await client.lrange(f"{prefix}:handoff:lines:{conversation_id}", 0, -1)
    ]
    tickets = []
    for raw in (await client.hgetall(f"{prefix}:handoff:tickets")).values():
        ticket = json.loads(raw)
        if ticket.get("conversation_id") == conversation_id:
            tickets.append(ticket)
    if not events and not handoff and not tickets:
        return None
    transcript = [
        {"speaker": m["speaker"], "text": m["text"], "time": _iso(m.get("time"))}
        for m in history_from_events(events)
    ]
    record = json.loads(handoff["record"]) if handoff.get("record") else None
    document: dict[str, Any] = {
        "conversation_id": conversation_id,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "transcript": transcript,
        "handoff": None
        if record is None
        else {
            "record": record,
            "state": handoff.get("state"),
            "agent": handoff.get("agent"),
            "resolution": handoff.get("resolution"),
            "rating": handoff.get("rating"),
            "lines_after_handoff": lines,
        },
        "tickets": tickets,
        "events": events,
    }
    masked: dict[str, Any] = redact_value(document)
    masked["conversation_id"] = conversation_id  # the id is what the export is looked up by
    masked["sha256"] = content_hash(masked)
    return masked


def _cell(value: Any) -> str:
    return f"<td>{html.escape(str(value or '')).replace(chr(10), '<br>')}</td>"


def render_html(document: dict[str, Any]) -> str:
    """A readable page of the export: every text escaped, the hash printed at the top and bottom."""
    rows = [
        f"<tr>{_cell(line.get('time'))}{_cell(line['speaker'])}{_cell(line['text'])}</tr>"
        for line in document["transcript"]
    ]
    handoff = document.get("handoff") or {}
    for line in handoff.get("lines_after_handoff") or []:
        who = " ".join(str(part) for part in (line.get("speaker"), line.get("agent")) if part)
        rows.append(f"<tr>{_cell(line.get('time'))}{_cell(who)}{_cell(line.get('text'))}</tr>")
    title = html.escape(f"Conversation {document['conversation_id']}")
    digest = html.escape(document["sha256"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:24px}td{border-bottom:1px solid #ddd;padding:4px 8px;"
        "vertical-align:top}code{word-break:break-all}</style></head><body>"
        f"<h1>{title}</h1><p>Exported {html.escape(document['exported_at'])} · personal data masked · "
        f"SHA-256 of the JSON export: <code>{digest}</code></p>"
        "<table><tr><th>time (UTC)</th><th>who</th><th>text</th></tr>"
        + "".join(rows)
        + f"</table><p>SHA-256: <code>{digest}</code></p></body></html>"
    )


async def export(client: Any, prefix: str, conversation_id: str, out_dir: Path) -> tuple[Path, Path, str]:
    """Write ``{id}.json`` and ``{id}.html`` into out_dir; returns both paths and the hash."""
    document = await collect(client, prefix, conversation_id)
    if document is None:
        raise KeyError(conversation_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = conversation_id.replace(":", "_")
    json_path, html_path = out_dir / f"{safe}.json", out_dir / f"{safe}.html"
    json_path.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    html_path.write_text(render_html(document), encoding="utf-8")
    logger.info("conversation %s: exported (sha256 %s)", conversation_id, document["sha256"])
    return json_path, html_path, str(document["sha256"])


class NotAnExport(ValueError):
    """The file is missing, unreadable or not an export this module wrote."""


def verify(json_path: Path) -> bool:
    """True when an export's content still matches the hash it carries; NotAnExport for other files."""
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise NotAnExport(f"{json_path}: not a readable export ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("sha256"), str):
        raise NotAnExport(f"{json_path}: no sha256 field; not an export")
    return bool(document["sha256"] == content_hash(document))
