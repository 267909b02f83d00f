"""Load: hundreds of widget conversations over socket.io at once, on the scaled-out stack.

    make bench-load      (.venv; 500 conversations for 5 minutes; starts its own stack)
    python -m bench.load --conversations 50 --minutes 1      (a short run)

The stack is scripts/replicas.py's: a private redis-server (AOF), 2 Rasa
replicas and 2 action servers behind nginx, and the handoff service, on free
loopback ports. Every simulated customer is a socket.io client through nginx
(websocket transport, as the widget), bound to its own loopback source address
(127.0.0.2 ...) so nginx's per-address stickiness spreads them over both
replicas as it would spread real customers. Customers start spread over the
ramp-up, then each one repeats one of four scripts until the time is up:

- greeting: "hello" -> the greeting;
- knowledge question: a routine question -> an answer from the knowledge base;
- order lookup: "where is my order" -> order id -> the phone's last 4 digits -> the order;
- handoff: "I want a human" -> queued -> "/cancel_handoff" -> back to the bot;

with a think time of 15-45 s between lines (``--think``: reading the reply and
typing the next line; `--think 5 20` is a stress setting). A message is
lost when no reply arrives within ``--reply-timeout`` s; an error event
counts as lost too. After the run every conversation's tracker is read back
through nginx and audited: each message sent appears exactly once, in the
order sent, and is followed by a bot line (``transcript`` in the results).
Reported: messages sent and lost, reply time p50/p90/p99
per script, replies per second, and the resident memory of every process at
start and end. Writes bench/results/load.json and bench/results/load.md (``--name`` for another stem).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import socketio  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.stats import summary  # noqa: E402
from scripts.replicas import ReplicaStack  # noqa: E402
from scripts.stack import private_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCRIPTS: dict[str, list[str]] = {
    "greeting": ["hello"],
    "knowledge": ["how do I top up my game account"],
    "order_lookup": ["where is my order", "DG202611200001", "8000"],
    "handoff": ["I want to talk to a human", "/cancel_handoff"],
}
SOURCE_ADDRESSES = 200  # 127.0.0.2 ... : distinct "customers" for nginx's address hash


@dataclass
class Tally:
    sent: int = 0
    lost: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reply_ms: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in SCRIPTS})
    connect_failures: int = 0
    disconnects: int = 0
    audit: dict[str, Any] = field(default_factory=dict)


class Customer:
    """One widget conversation: a socket.io connection from its own loopback address."""

    def __init__(self, url: str, number: int, tally: Tally, reply_timeout: float) -> None:
        self.opened = False
        self.url = url
        self.number = number
        self.tally = tally
        self.reply_timeout = reply_timeout
        self.session_id = f"load-{number}-" + uuid.uuid4().hex[:8]
        self.issued_id = self.session_id
        self.secret = ""
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Queue[str] = asyncio.Queue()
        self.sent: list[str] = []
        self.http: aiohttp.ClientSession | None = None
        self.sio: socketio.AsyncClient | None = None

    async def open(self) -> None:
        source = f"127.0.0.{2 + self.number % SOURCE_ADDRESSES}"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
        # reconnects as the widget's socket.io client does, and asks for its session again
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=1, http_session=self.http)
        self.sio.on("bot_uttered", self.replies.put_nowait)
        self.sio.on("connect", self._connected)
        self.sio.on("disconnect", self._disconnected)
        self.sio.on("session_confirm", self._confirm)
        self.sio.on("session_secret", self._secret)
        self.sio.on("error_message", lambda data: self.tally.errors.append(f"{self.session_id}: {data}"))
        await self.sio.connect(
            self.url, transports=["websocket"], socketio_path="/socket.io", wait_timeout=30
        )
        await self.sio.emit("session_request", {"session_id": self.session_id})
        await asyncio.wait_for(self.confirmed.get(), 30)
        self.session_id = self.issued_id
        self.opened = True

    def _secret(self, data: dict[str, str]) -> None:
        self.secret = data.get("secret", "")

    def _confirm(self, session_id: str) -> None:
        self.issued_id = session_id  # the server issues the id and its secret; a rejoin shows both
        self.confirmed.put_nowait(session_id)

    async def _connected(self) -> None:
        if self.opened and self.sio is not None:
            request = {"session_id": self.session_id, "session_secret": self.secret}
            await self.sio.emit("session_request", request)

    def _disconnected(self) -> None:
        if self.opened:
            self.tally.disconnects += 1

    async def say(self, script: str, text: str) -> bool:
        assert self.sio is not None
        while not self.replies.empty():  # late queue notices of an earlier handoff
            self.replies.get_nowait()
        started = time.perf_counter()
        try:
            while not self.sio.connected:  # the widget holds a line typed while it reconnects
                if time.perf_counter() - started > self.reply_timeout:
                    raise asyncio.TimeoutError
                await asyncio.sleep(0.2)
            await self.sio.emit("user_uttered", {"session_id": self.session_id, "message": text})
            self.tally.sent += 1
            self.sent.append(text)
            await asyncio.wait_for(self.replies.get(), self.reply_timeout - (time.perf_counter() - started))
        except (asyncio.TimeoutError, socketio.exceptions.SocketIOError):
            self.tally.lost.append(f"{self.session_id}: {text!r}")
            return False
        self.tally.reply_ms[script].append((time.perf_counter() - started) * 1000)
        return True

    async def close(self) -> None:
        self.opened = False  # our own goodbye is not a dropped socket
        if self.sio is not None:
            await self.sio.disconnect()
        if self.http is not None:
            await self.http.close()


async def customer_loop(
    customer: Customer, start_at: float, stop_at: float, rng: random.Random, think: tuple[float, float]
) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        await customer.open()
    except Exception as error:  # noqa: BLE001 - a refused connection is a result, not a crash
        customer.tally.connect_failures += 1
        customer.tally.errors.append(f"{customer.session_id}: connect: {error!r}")
        await customer.close()
        return
    try:
        while time.monotonic() < stop_at:
            script = rng.choice(list(SCRIPTS))
            for text in SCRIPTS[script]:
                if time.monotonic() >= stop_at or not await customer.say(script, text):
                    break
                await asyncio.sleep(rng.uniform(*think))
    finally:
        await customer.close()


def audit_transcript(events: list[dict[str, Any]], sent: list[str]) -> str | None:
    """What is wrong with one conversation's tracker, or None: every line once, in order, answered."""
    said = [e.get("text") for e in events if e.get("event") == "user"]
    if said != sent:
        return f"customer lines {said!r} != sent {sent!r}"
    # answered = a bot event follows the line before the next customer line
    unanswered: list[str] = []
    waiting: str | None = None
    for event in events:
        if event.get("event") == "user":
            if waiting is not None:
                unanswered.append(waiting)
            waiting = str(event.get("text"))
        elif event.get("event") == "bot":
            waiting = None
    if waiting is not None:
        unanswered.append(waiting)
    return f"no bot line after {unanswered!r}" if unanswered else None


async def audit(url: str, token: str, customers: list[Customer]) -> dict[str, Any]:
    """Read every conversation back through nginx and check it against what was sent."""
    problems: list[str] = []
    gate = asyncio.Semaphore(16)

    async def one(http: aiohttp.ClientSession, customer: Customer) -> None:
        if not customer.sent:
            return
        async with gate:
            async with http.get(
                f"{url}/conversations/{customer.session_id}/tracker",
                params={"token": token, "include_events": "ALL"},
            ) as reply:
                if reply.status != 200:
                    problems.append(f"{customer.session_id}: tracker HTTP {reply.status}")
                    return
                events = (await reply.json())["events"]
        problem = audit_transcript(events, customer.sent)
        if problem:
            problems.append(f"{customer.session_id}: {problem}")

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(one(http, c) for c in customers))
    return {
        "conversations": sum(1 for c in customers if c.sent),
        "lines": sum(len(c.sent) for c in customers),
        "problems": len(problems),
        "problem_examples": problems[:10],
    }


def rss_mb(stack: ReplicaStack) -> dict[str, float]:
    """Resident memory of each service's process group leader (MiB, from /proc)."""
    sizes: dict[str, float] = {}
    for service in stack.services:
        if service.process is None or service.process.poll() is not None:
            continue
        try:
            fields = Path(f"/proc/{service.process.pid}/status").read_text().split("\n")
        except OSError:
            continue
        for line in fields:
            if line.startswith("VmRSS:"):
                sizes[service.name] = round(int(line.split()[1]) / 1024, 1)
    return sizes


async def run_load(
    stack: ReplicaStack,
    conversations: int,
    seconds: float,
    ramp: float,
    timeout: float,
    think: tuple[float, float],
) -> Tally:
    tally = Tally()
    url = f"http://127.0.0.1:{stack.settings.rasa_port}"
    rng = random.Random(7)
    now = time.monotonic()
    stop_at = now + ramp + seconds
    customers = [Customer(url, n, tally, timeout) for n in range(conversations)]
    tasks = [
        asyncio.create_task(
            customer_loop(c, now + ramp * n / conversations, stop_at, random.Random(rng.random()), think)
        )
        for n, c in enumerate(customers)
    ]
    with tqdm(total=round(ramp + seconds), desc="load", unit="s") as bar:
        while time.monotonic() < stop_at:
            await asyncio.sleep(1)
            bar.update(1)
            bar.set_postfix(sent=tally.sent, lost=len(tally.lost))
    # a customer stops after the reply it is waiting for (at most the reply timeout)
    await asyncio.gather(*tasks)
    tally.audit = await audit(url, stack.settings.rasa_token, customers)
    return tally


def write(results: dict[str, Any], stem: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    lines = [
        f"# Load: {results['conversations']} socket.io conversations for {results['seconds'] / 60:.0f} min",
        "",
        f"Command: `{results['command']}`; {results['when']}; {results['machine']}.",
        f"Stack: {results['stack']}.",
        f"Customers arrive over {results['ramp_seconds']:g} s, think {results['think_seconds'][0]:g}-"
        f"{results['think_seconds'][1]:g} s between lines; a reply later than "
        f"{results['reply_timeout_seconds']:g} s counts as lost.",
        "",
        f"- messages sent: {results['sent']}; **lost: {results['lost']}**; "
        f"error events: {results['errors']}; connections refused: {results['connect_failures']}; "
        f"socket drops (the client reconnected): {results['disconnects']}",
        f"- replies per second (whole run): {results['replies_per_second']}",
        "- turns served per Rasa replica: "
        + ", ".join(f"{name} {count:.0f}" for name, count in results["turns_per_replica"].items()),
        f"- transcripts read back: {results['transcript']['conversations']} conversations, "
        f"{results['transcript']['lines']} customer lines; **problems: {results['transcript']['problems']}** "
        "(a line missing, duplicated, out of order or without a bot line after it)",
        "",
        "| script | replies | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for script, figures in results["reply_ms"].items():
        if figures.get("n"):
            lines.append(
                f"| {script} | {figures['n']} | {figures['p50_ms']} | {figures['p90_ms']} | "
                f"{figures['p99_ms']} | {figures['max_ms']} |"
            )
    lines += ["", "| process | RSS at start (MiB) | RSS at end (MiB) |", "|---|---|---|"]
    for process, start in results["rss_mb"]["start"].items():
        lines.append(f"| {process} | {start} | {results['rss_mb']['end'].get(process, '-')} |")
    if results["lost_examples"]:
        lines += ["", "Lost (first 10): " + "; ".join(results["lost_examples"])]
    if results["transcript"]["problem_examples"]:
        problems = results["transcript"]["problem_examples"]
        lines += ["", "Transcript problems (first 10): " + "; ".join(problems)]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds over which customers arrive")
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(15.0, 45.0),
        metavar=("MIN", "MAX"),
        help="seconds a customer takes to read the reply and type the next line",
    )
    parser.add_argument("--name", default="load", help="results file stem under bench/results/")
    parser.add_argument("--reply-timeout", type=float, default=60.0, help="a reply later than this is lost")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="cs-load-"))
    # the per-sender limit is not what is measured here
    settings = private_settings(var, "load", rate_limit_burst=0, rate_limit_per_minute=0)
    stack = ReplicaStack(settings=settings, log_dir=var / "log", start_redis=True)
    print(f"starting the scaled-out stack (logs in {var / 'log'})", flush=True)
    stack.start()
    try:
        start_rss = rss_mb(stack)
        started = time.monotonic()
        tally = asyncio.run(
            run_load(
                stack,
                args.conversations,
                args.minutes * 60,
                args.ramp,
                args.reply_timeout,
                (args.think[0], args.think[1]),
            )
        )
        elapsed = time.monotonic() - started
        end_rss = rss_mb(stack)
        spread = stack.turns_per_replica()
    finally:
        stack.stop()
    replies = sum(len(v) for v in tally.reply_ms.values())
    results = {
        "benchmark": "load",
        "command": " ".join(["python -m bench.load", *sys.argv[1:]]) if sys.argv[1:] else "make bench-load",
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "stack": "2 Rasa replicas + 2 action servers behind nginx, private redis-server (AOF), "
        "handoff service",
        "conversations": args.conversations,
        "seconds": args.minutes * 60,
        "ramp_seconds": args.ramp,
        "think_seconds": list(args.think),
        "reply_timeout_seconds": args.reply_timeout,
        "sent": tally.sent,
        "lost": len(tally.lost),
        "errors": len(tally.errors),
        "connect_failures": tally.connect_failures,
        "disconnects": tally.disconnects,
        "replies_per_second": round(replies / elapsed, 1),
        "reply_ms": {name: summary(values) for name, values in tally.reply_ms.items()},
        "reply_ms_all": summary([v for values in tally.reply_ms.values() for v in values]),
        "transcript": tally.audit,
        "turns_per_replica": spread,
        "rss_mb": {"start": start_rss, "end": end_rss},
        "lost_examples": tally.lost[:10],
        "error_examples": tally.errors[:10],
    }
    write(results, args.name)
    print((RESULTS / f"{args.name}.md").read_text())
    failed = tally.lost or tally.connect_failures or tally.audit.get("problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
