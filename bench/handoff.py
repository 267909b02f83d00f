"""Handoff latency: request -> console and agent reply -> customer, at 50 concurrent conversations.

    make bench-handoff        (.venv; starts its own stack on free ports, about 5 minutes on 2 cores)

Customers are socket.io widget clients; the agent is the console's API plus
its websocket, exactly what the browser console uses.

- request -> visible: from the customer sending "I want a human" to the
  console's websocket announcing the new conversation (a whole Rasa turn plus
  the handoff pipeline);
- handoff request -> visible: from the handoff request the action server
  records (the record's ``created`` time) to the same announcement: the
  handoff pipeline alone (request stream, admission, queue event, websocket).
- reply -> customer: from the agent's POST /api/conversations/{id}/messages to
  the customer's socket receiving the line.

Two modes, each with its own rounds: ``burst`` - all 50 conversations take
each step in the same instant (the worst case: 50 Rasa turns in flight on one
machine); ``steady`` - the 50 conversations are open at once but each takes
its step at a random moment within ``--spread`` seconds (5 s: about ten
requests a second, a busy support desk), so the figures are one request's
cost under ordinary concurrency rather than the length of a 50-deep queue.
Before them, 8 untimed conversations take every step once (TensorFlow traces
its graphs and the action server opens its clients on first calls).
After the (unmeasured) claims a round waits until no customer has had a line for
1 s: each claim moves the line, and the widgets' position updates would otherwise
still be in flight during the measured reply step.

Baselines in the same run and the same stack, same concurrency and mode:
- a plain greeting turn (customer sends "hello", receives the greeting): what
  any turn costs on this machine, for the request side;
- a bot line posted straight to Rasa's tracker events API
  (output_channel=latest) to the same customer: the floor under the agent
  reply path, which adds the handoff service's checks on top.

Writes bench/results/handoff.json and bench/results/handoff.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import socketio  # noqa: E402
from tqdm import tqdm  # noqa: E402
from websockets.client import connect as websocket_connect  # noqa: E402

from bench.stats import summary  # noqa: E402
from handoff.auth import AgentDirectory, Role  # noqa: E402
from handoff.queue import HandoffQueue  # noqa: E402
from scripts.stack import Stack, private_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# the goals; "request" read both ways: the customer's message, and the handoff request itself
MODES = ("burst", "steady")
# untimed conversations served before the measured rounds
WARM_UP = 8
GOALS_MS = {"request_to_console": 250.0, "handoff_request_to_console": 250.0, "reply_to_customer": 150.0}


class Customer:
    """One widget: a socket.io connection whose bot messages land in a queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.messages: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.session = uuid.uuid4().hex
        confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.confirmed = confirmed
        self.last_arrival = 0.0
        self.sio.on("bot_uttered", self._uttered)
        self.sio.on("session_confirm", self._confirm)

    def _uttered(self, data: dict[str, Any]) -> None:
        self.last_arrival = time.perf_counter()
        self.messages.put_nowait((self.last_arrival, data))

    def _confirm(self, session_id: str) -> None:
        self.session = session_id  # the server issues the id (and its secret) to a new widget
        if not self.confirmed.done():
            self.confirmed.set_result(session_id)

    async def open(self) -> None:
        await self.sio.connect(self.url, transports=["websocket"], socketio_path="/socket.io")
        await self.sio.emit("session_request", {"session_id": self.session})
        await asyncio.wait_for(self.confirmed, 20)

    async def send(self, text: str) -> float:
        started = time.perf_counter()
        await self.sio.emit("user_uttered", {"session_id": self.session, "message": text})
        return started

    async def wait_for(self, text: str | None, timeout: float = 60) -> float:
        """Arrival time of the first message with this text (None: any message)."""
        deadline = time.monotonic() + timeout
        while True:
            arrived, data = await asyncio.wait_for(self.messages.get(), max(0.1, deadline - time.monotonic()))
            if text is None or data.get("text") == text:
                return arrived

    def drain(self) -> None:
        while not self.messages.empty():
            self.messages.get_nowait()

    async def close(self) -> None:
        await self.sio.disconnect()


class Console:
    """The agent's API session and websocket; records when each conversation became visible."""

    def __init__(self, web: str) -> None:
        self.web = web
        self.http = httpx.AsyncClient(base_url=web, timeout=60, limits=httpx.Limits(max_connections=100))
        self.csrf = ""
        self.visible: dict[str, float] = {}
        self.visible_wall: dict[str, float] = {}
        self._seen: dict[str, asyncio.Event] = {}
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def login(self, name: str, password: str) -> None:
        reply = await self.http.post("/api/agent/login", json={"name": name, "password": password})
        reply.raise_for_status()
        self.csrf = reply.json()["csrf"]
        cookie = f"cs_session={self.http.cookies.get('cs_session')}"
        self.ws = await websocket_connect(
            self.web.replace("http", "ws") + "/api/agent/ws", extra_headers={"Cookie": cookie}, max_queue=None
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message.get("type") == "conversation":
                conversation = message["conversation_id"]
                self.visible.setdefault(conversation, time.perf_counter())
                self.visible_wall.setdefault(conversation, time.time())
                self.seen(conversation).set()

    def seen(self, conversation: str) -> asyncio.Event:
        """Set once the websocket has announced the conversation (waiting on it costs no CPU)."""
        return self._seen.setdefault(conversation, asyncio.Event())

    async def get(self, path: str, key: str) -> list[dict[str, Any]]:
        reply = await self.http.get(path)
        reply.raise_for_status()
        return list(reply.json()[key])

    async def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        reply = await self.http.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})
        reply.raise_for_status()

    async def close(self) -> None:
        if self.reader:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.http.aclose()


async def settle(customers: list[Customer], quiet: float = 1.0, limit: float = 60.0) -> None:
    """Wait until no customer has received a line for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        last = max(c.last_arrival for c in customers)
        if time.perf_counter() - last >= quiet:
            return
        await asyncio.sleep(0.2)


async def one_round(
    stack: Stack, console: Console, concurrency: int, progress: tqdm, spread: float, rng: random.Random
) -> dict[str, list[float]]:
    """One round of every path; each customer acts at a random moment within ``spread`` s (0: all at once)."""
    rasa = f"http://127.0.0.1:{stack.settings.rasa_port}"

    async def each(step: Callable[[Customer], Awaitable[None]]) -> None:
        async def staggered(c: Customer) -> None:
            await asyncio.sleep(rng.uniform(0, spread))
            await step(c)

        await asyncio.gather(*(staggered(c) for c in customers))

    customers = [Customer(rasa) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in customers))
    out: dict[str, list[float]] = {
        "greet": [],
        "request_to_console": [],
        "handoff_request_to_console": [],
        "rasa_api_line": [],
        "reply_to_customer": [],
    }

    async def greet(c: Customer) -> None:
        started = await c.send("hello")
        out["greet"].append((await c.wait_for(None) - started) * 1000)

    await each(greet)
    progress.update(1)

    async def ask(c: Customer) -> None:
        started = await c.send("I want to talk to a human")
        try:
            # an event, not a poll: 50 tasks polling every 2 ms took CPU from the stack being measured
            await asyncio.wait_for(console.seen(c.session).wait(), 60)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{c.session} never reached the console") from None
        out["request_to_console"].append((console.visible[c.session] - started) * 1000)

    await each(ask)
    created = {c["conversation_id"]: c["created"] for c in await console.get("/api/queue", "waiting")}
    for c in customers:
        requested = datetime.fromisoformat(created[c.session]).timestamp()
        out["handoff_request_to_console"].append((console.visible_wall[c.session] - requested) * 1000)
    progress.update(1)
    for c in customers:  # claims are not what is measured
        await console.post(f"/api/conversations/{c.session}/claim")
    # every claim moves the line and each waiting widget is told its new place: 50 claims in a
    # row send hundreds of position lines, which would otherwise still be in flight during the
    # measured steps
    await settle(customers)
    for c in customers:
        c.drain()

    async def direct(c: Customer, client: httpx.AsyncClient) -> None:
        text = "direct " + secrets.token_hex(4)
        started = time.perf_counter()
        reply = await client.post(
            f"/conversations/{c.session}/tracker/events",
            params={
                "token": stack.settings.rasa_token,
                "output_channel": "latest",
                "execute_side_effects": "true",
            },
            json=[{"event": "bot", "text": text}],
        )
        reply.raise_for_status()
        out["rasa_api_line"].append((await c.wait_for(text) - started) * 1000)

    async with httpx.AsyncClient(
        base_url=rasa, timeout=60, limits=httpx.Limits(max_connections=100)
    ) as client:
        await each(lambda c: direct(c, client))
    progress.update(1)

    async def reply(c: Customer) -> None:
        text = "agent " + secrets.token_hex(4)
        started = time.perf_counter()
        await console.post(f"/api/conversations/{c.session}/messages", {"text": text})
        out["reply_to_customer"].append((await c.wait_for(text) - started) * 1000)

    await each(reply)
    progress.update(1)
    for c in customers:
        await console.post(f"/api/conversations/{c.session}/close", {"resolution": "resolved"})
    await asyncio.gather(*(c.close() for c in customers))
    return out


async def measure(
    stack: Stack, concurrency: int, rounds: int, modes: dict[str, float]
) -> dict[str, dict[str, list[float]]]:
    """Every mode's rounds with one agent; {mode: {path: latencies in ms}}."""
    name, password = "bench-agent", secrets.token_urlsafe(12)
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    await AgentDirectory(queue.client, stack.settings.key_prefix).add(name, password, Role.AGENT)
    await queue.close()
    console = Console(f"http://127.0.0.1:{stack.settings.web_port}")
    await console.login(name, password)
    rng = random.Random(11)
    totals: dict[str, dict[str, list[float]]] = {}
    try:
        # untimed: TensorFlow traces its graphs and the action server loads its clients on first calls
        with tqdm(total=4, desc="handoff bench, warm-up", unit="step") as progress:
            await one_round(stack, console, WARM_UP, progress, 0.0, rng)
        for mode, spread in modes.items():
            with tqdm(total=rounds * 4, desc=f"handoff bench, {concurrency} {mode}", unit="step") as progress:
                for _ in range(rounds):
                    measured = await one_round(stack, console, concurrency, progress, spread, rng)
                    for key, values in measured.items():
                        totals.setdefault(mode, {}).setdefault(key, []).extend(values)
    finally:
        await console.close()
    return totals


ROWS = [
    ("request -> visible in console", "request_to_console", "greet turn (baseline)", "greet"),
    (
        "handoff request recorded -> visible in console",
        "handoff_request_to_console",
        "greet turn (baseline)",
        "greet",
    ),
    ("agent reply -> customer", "reply_to_customer", "bot line via Rasa API (baseline)", "rasa_api_line"),
]


def mode_title(mode: str, results: dict[str, Any]) -> str:
    spread = results["modes"][mode]
    if not spread:
        return f"{mode}: all {results['concurrency']} conversations act in the same instant"
    return (
        f"{mode}: {results['concurrency']} conversations open at once, each acting at a random moment "
        f"within {spread:g} s"
    )


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "handoff.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Handoff latency",
        "",
        f"`make bench-handoff` on {results['machine']}, {results['concurrency']} concurrent socket.io "
        f"conversations x {results['rounds']} rounds per mode, {results['date']}.",
    ]
    for mode in results["modes"]:
        m = results["measurements"][mode]
        lines += [
            "",
            f"## {mode_title(mode, results)}",
            "",
            "| path | p50 ms | p90 ms | p99 ms | goal p99 | met | baseline | baseline p50 | baseline p99 "
            "| p50 ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for title, key, base_title, base in ROWS:
            ours, ref = m[key], m[base]
            met = "yes" if results["goals_met"][mode][key] else "no"
            lines.append(
                f"| {title} | {ours['p50_ms']} | {ours['p90_ms']} | {ours['p99_ms']} | {GOALS_MS[key]} "
                f"| {met} "
                f"| {base_title} | {ref['p50_ms']} | {ref['p99_ms']} | {results['ratios'][mode][key]} |"
            )
    (RESULTS / "handoff.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ratios(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    return {key: round(stats[key]["p50_ms"] / stats[base]["p50_ms"], 2) for _, key, _, base in ROWS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--spread",
        type=float,
        default=5.0,
        help="steady mode: each conversation acts at a random moment within this many seconds",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), help="modes to run (default: both)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy Rasa, the action server and the handoff service during the run",
    )
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    settings = private_settings(
        var,
        "bench",
        log_level="WARNING",
        rate_limit_burst=0,
        rate_limit_per_minute=0,  # turn cost, not the limiter
    )
    stack = Stack(settings=settings, log_dir=var / "log", start_redis=True)
    print("starting a private stack (Redis, action server, Rasa, handoff service)...", flush=True)
    stack.start()
    spies: list[subprocess.Popen[bytes]] = []
    if args.profile:
        from bench.turns import pid_listening, record_flame_graph

        # every process of the path under py-spy for the whole measurement: where a turn's time goes
        ports = {"rasa": settings.rasa_port, "actions": settings.action_port, "web": settings.web_port}
        spies = [
            record_flame_graph(pid_listening(port), RESULTS / f"flame-handoff-{name}.svg")
            for name, port in ports.items()
        ]
    modes = {mode: (args.spread if mode == "steady" else 0.0) for mode in MODES if mode in args.modes}
    try:
        measured = asyncio.run(measure(stack, args.concurrency, args.rounds, modes))
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        for spy in spies:
            spy.wait(timeout=60)
        stack.stop()
    stats = {
        mode: {key: summary(values) for key, values in paths.items()} for mode, paths in measured.items()
    }
    results = {
        "command": "make bench-handoff",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} cores",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "modes": modes,
        "goals_p99_ms": GOALS_MS,
        "measurements": stats,
        "ratios": {mode: ratios(paths) for mode, paths in stats.items()},
        "goals_met": {
            mode: {key: paths[key]["p99_ms"] <= goal for key, goal in GOALS_MS.items()}
            for mode, paths in stats.items()
        },
    }
    write(results)
    print((RESULTS / "handoff.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
