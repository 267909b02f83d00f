"""The handoff record: what the bot hands to a person (ARCHITECTURE.md contract).

It crosses a process boundary (action server -> Redis -> handoff service), so
it is a plain dataclass with explicit JSON (de)serialisation.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any


class Priority(str, Enum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


class Reason(str, Enum):
    CUSTOMER_REQUEST = "customer_request"
    URGENT_TOPIC = "urgent_topic"
    SECOND_FALLBACK = "second_fallback"
    LOW_CONFIDENCE = "low_confidence"
    VERIFICATION_FAILED = "verification_failed"
    ACTION_FAILURE = "action_failure"
    NOT_FOUND = "not_found"  # an order id or card code we do not know, given twice


# (first response, resolution) per priority; HANDOFF_SLA_URGENT="30m,24h" and friends override them
DEFAULT_SLA = {
    Priority.URGENT: (timedelta(minutes=30), timedelta(hours=24)),
    Priority.HIGH: (timedelta(hours=1), timedelta(hours=48)),
    Priority.NORMAL: (timedelta(hours=4), timedelta(hours=72)),
}
# kept for callers that only need the first-response target
FIRST_RESPONSE_SLA = {priority: first for priority, (first, _) in DEFAULT_SLA.items()}


def _duration(text: str) -> timedelta:
    value, unit = float(text[:-1]), text[-1].lower()
    if unit not in "mhd" or value <= 0:
        raise ValueError(f"SLA durations look like 30m, 4h or 2d (got {text!r})")
    return (
        timedelta(minutes=value)
        if unit == "m"
        else timedelta(hours=value)
        if unit == "h"
        else timedelta(days=value)
    )


def sla_for(priority: Priority) -> tuple[timedelta, timedelta]:
    """(first response, resolution) for a priority, from HANDOFF_SLA_<PRIORITY> or the defaults."""
    from common.settings import load_env_file

    name = f"HANDOFF_SLA_{priority.value.upper()}"
    raw = os.environ.get(name) or load_env_file().get(name)
    if not raw:
        return DEFAULT_SLA[priority]
    first, _, resolve = raw.partition(",")
    try:
        return _duration(first.strip()), _duration(resolve.strip() or "72h")
    except (ValueError, IndexError) as error:
        raise ValueError(f"{name}={raw!r}: {error}") from error


@dataclass(frozen=True)
class TranscriptLine:
    """One line of the conversation as the agent will read it."""

    speaker: str  # "customer" | "bot" | "agent"
    text: str
    time: str  # ISO 8601, UTC


ATTACHMENT_DETAILS = ("url", "label", "title", "link", "file", "caption")


def attachment_text(metadata: dict[str, Any]) -> str | None:
    """How a photo, voice note, ... from WeChat/Telegram reads in a transcript: "[image] <url>"."""
    attachment = metadata.get("attachment")
    if not isinstance(attachment, dict):
        return None
    described = " ".join(str(attachment[k]) for k in ATTACHMENT_DETAILS if attachment.get(k))
    return f"[{attachment.get('type') or 'attachment'}] {described}".rstrip()


@dataclass(frozen=True)
class HandoffRecord:
    conversation_id: str
    channel: str
    language: str
    reason: Reason
    priority: Priority
    category: str
    summary: str
    transcript: list[TranscriptLine]
    created: str
    sla_due: str
    state: str = "requested"
    entities: dict[str, str] = field(default_factory=dict)
    resolution_due: str = ""  # records from before this field have none

    @classmethod
    def build(
        cls,
        *,
        conversation_id: str,
        channel: str,
        language: str,
        reason: Reason,
        priority: Priority,
        category: str,
        summary: str,
        transcript: list[TranscriptLine],
        entities: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> HandoffRecord:
        created = now or datetime.now(timezone.utc)
        first_response, resolution = sla_for(priority)
        return cls(
            conversation_id=conversation_id,
            channel=channel,
            language=language,
            reason=reason,
            priority=priority,
            category=category,
            summary=summary,
            transcript=transcript,
            created=created.isoformat(),
            sla_due=(created + first_response).isoformat(),
            resolution_due=(created + resolution).isoformat(),
            entities=entities or {},
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["reason"] = self.reason.value
        data["priority"] = self.priority.value
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> HandoffRecord:
        data: dict[str, Any] = json.loads(raw)
        data["reason"] = Reason(data["reason"])
        data["priority"] = Priority(data["priority"])
        data["transcript"] = [TranscriptLine(**line) for line in data.get("transcript", [])]
        return cls(**data)
