"""Turn speed: our greet, knowledge-base and order-lookup turns against stock moodbot's greet.

    make bench-turns     (.venv; trains stock moodbot and starts a private stack, ~10 minutes on 2 cores)

Each system first serves 32 untimed conversations of every kind (TensorFlow
traces its graphs on first calls). Every measured conversation then sends an
untimed warm-up message (so no timed turn pays for a new session), then one
timed turn:

- stock greet:       moodbot (`rasa init`, trained in this run)  "hello" -> "hello"
- ours greet:        "hello" -> "hello"
- ours KB answer:    "hello" -> a routine question answered from an article
- ours order lookup: "where is my order", order id -> the ownership proof
                     (the action checks it and reads the shop)

over REST (POST until the response) and socket.io (emit until the turn's last
bot message arrives; the number of messages is what the REST turn returned),
with 1, 8, 32 and 128 conversations in flight at once. A wrong or missing
reply counts as an error. Reported per cell: p50/p90/p99 of the timed turns,
turns/s (all turns, warm-ups included, over the cell's wall time), errors.

Then the slowest of our turns is run at 8 concurrent for ``--profile-seconds``
under py-spy (Rasa and the action server), written as flame graphs to
bench/results/flame-*.svg with their heaviest frames in the markdown.

Writes bench/results/turns.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import html
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import socketio  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.moodbot import Moodbot  # noqa: E402
from bench.stats import percentile  # noqa: E402
from scripts.stack import Stack, private_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LEVELS = (1, 8, 32, 128)
SAMPLES = {1: 20, 8: 32, 32: 64, 128: 128}  # timed turns per cell
ORDER = "DG202611200001"  # seeded demo order (phone ends 8000)
KB_QUESTIONS = (
    "how do I top up my game account",
    "what are your business hours",
    "how long does a refund take",
)
GOAL_KB_TO_STOCK_GREET = 1.5


@dataclass(frozen=True)
class TurnKind:
    name: str
    system: str  # "stock" | "ours"
    warmup: tuple[str, ...]
    timed: Callable[[int], str]
    check: Callable[[list[dict[str, Any]]], bool]


def kinds(greetings: dict[str, str]) -> list[TurnKind]:
    def greeted(expected: str) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda replies: bool(replies) and replies[0].get("text") == expected

    return [
        TurnKind("stock greet", "stock", ("hello",), lambda i: "hello", greeted(greetings["stock"])),
        TurnKind("ours greet", "ours", ("hello",), lambda i: "hello", greeted(greetings["ours"])),
        TurnKind(
            "ours KB answer",
            "ours",
            ("hello",),
            lambda i: KB_QUESTIONS[i % len(KB_QUESTIONS)],
            lambda replies: bool(replies) and "(Source: " in str(replies[0].get("text")),
        ),
        TurnKind(
            "ours order lookup",
            "ours",
            ("where is my order", ORDER),
            lambda i: "8000",
            lambda replies: bool(replies) and ORDER in str(replies[-1].get("text")),
        ),
    ]


@dataclass
class Cell:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    turns: int = 0
    wall: float = 0.0
    replies: Counter[int] = field(default_factory=Counter)
    warmup_replies: dict[str, Counter[int]] = field(default_factory=dict)


class RestClient:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url
        self.sender = "bench-" + uuid.uuid4().hex[:12]

    async def open(self) -> None:
        return None

    async def turn(self, text: str, expect: int) -> list[dict[str, Any]]:
        reply = await self.http.post(self.url, json={"sender": self.sender, "message": text})
        reply.raise_for_status()
        return list(reply.json())

    async def close(self) -> None:
        return None


class SocketClient:
    """A widget's socket.io session (Rasa's protocol, which ours keeps)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.session = uuid.uuid4().hex
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Event = asyncio.Event()
        self.sio.on("bot_uttered", self.inbox.put_nowait)
        self.sio.on("session_confirm", self._confirm)

    def _confirm(self, session_id: str) -> None:
        self.session = session_id  # the server issues the id (and its secret) to a new widget
        self.confirmed.set()

    async def open(self) -> None:
        await self.sio.connect(
            self.url, transports=["websocket"], socketio_path="/socket.io", wait_timeout=30
        )
        await self.sio.emit("session_request", {"session_id": self.session})
        await asyncio.wait_for(self.confirmed.wait(), 30)

    async def turn(self, text: str, expect: int) -> list[dict[str, Any]]:
        while not self.inbox.empty():
            self.inbox.get_nowait()
        await self.sio.emit("user_uttered", {"session_id": self.session, "message": text})
        got = [await asyncio.wait_for(self.inbox.get(), 60)]
        while len(got) < expect:
            got.append(await asyncio.wait_for(self.inbox.get(), 60))
        return got

    async def close(self) -> None:
        await self.sio.disconnect()


async def run_cell(
    kind: TurnKind,
    make: Callable[[], Any],
    concurrency: int,
    expect: dict[str, int],
    progress: tqdm,
) -> Cell:
    cell = Cell()
    samples = SAMPLES[concurrency]
    per_worker = max(1, samples // concurrency)

    async def worker(w: int) -> None:
        for r in range(per_worker):
            client = make()
            try:
                await client.open()
                for text in kind.warmup:
                    got = await client.turn(text, expect.get(f"{kind.name}:warmup:{text}", 1))
                    cell.warmup_replies.setdefault(text, Counter())[len(got)] += 1
                    cell.turns += 1
                started = time.perf_counter()
                replies = await client.turn(kind.timed(w * per_worker + r), expect.get(kind.name, 1))
                elapsed = (time.perf_counter() - started) * 1000
                cell.turns += 1
                cell.replies[len(replies)] += 1
                if kind.check(replies):
                    cell.latencies.append(elapsed)
                else:
                    cell.errors["wrong reply"] += 1
            except (
                httpx.HTTPError,
                socketio.exceptions.SocketIOError,
                asyncio.TimeoutError,
                OSError,
            ) as error:
                cell.errors[type(error).__name__] += 1
            finally:
                try:
                    await client.close()
                except Exception:  # noqa: BLE001 - a failed close must not hide the measurement
                    cell.errors["close"] += 1
                progress.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cell.wall = time.perf_counter() - started
    return cell


def summarise(cell: Cell) -> dict[str, Any]:
    values = cell.latencies or [float("nan")]
    return {
        "n": len(cell.latencies),
        "p50_ms": round(percentile(values, 50), 1),
        "p90_ms": round(percentile(values, 90), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "mean_ms": round(statistics.fmean(values), 1),
        "turns_per_s": round(cell.turns / cell.wall, 1) if cell.wall else 0.0,
        "errors": sum(cell.errors.values()),
        "error_kinds": dict(cell.errors),
        "raw_ms": [round(v, 1) for v in cell.latencies],
    }


async def measure_all(
    urls: dict[str, str], greetings: dict[str, str], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Every cell; headers authenticate our REST client (stock moodbot's REST ignores them)."""
    results: dict[str, Any] = {}
    all_kinds = kinds(greetings)
    total = sum(max(1, SAMPLES[c] // c) * c for c in LEVELS) * len(all_kinds) * 2
    expect: dict[str, int] = {}
    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=200), headers=headers or {}
    ) as http:
        # first calls trace TensorFlow graphs and fill caches: keep them out of every cell
        with tqdm(total=len(all_kinds) * SAMPLES[8], desc="warm-up", unit="conv", mininterval=2) as progress:
            for kind in all_kinds:
                url = urls[kind.system] + "/webhooks/rest/webhook"
                await run_cell(kind, functools.partial(RestClient, http, url), 8, {}, progress)
        with tqdm(total=total, desc="conversations", unit="conv", mininterval=2) as progress:
            for transport in ("rest", "socketio"):
                for kind in all_kinds:
                    base = urls[kind.system]
                    for level in LEVELS:
                        if transport == "rest":

                            def make(base: str = base) -> Any:
                                return RestClient(http, base + "/webhooks/rest/webhook")
                        else:

                            def make(base: str = base) -> Any:
                                return SocketClient(base)

                        cell = await run_cell(kind, make, level, expect, progress)
                        if transport == "rest" and cell.replies:
                            expect[kind.name] = cell.replies.most_common(1)[0][0]
                            for text, counts in cell.warmup_replies.items():
                                expect[f"{kind.name}:warmup:{text}"] = counts.most_common(1)[0][0]
                        results.setdefault(transport, {}).setdefault(kind.name, {})[str(level)] = summarise(
                            cell
                        )
    results["messages_per_turn"] = expect
    return results


async def profile_load(
    url: str, kind: TurnKind, seconds: float, headers: dict[str, str] | None = None
) -> None:
    """Keep 8 conversations of ``kind`` going over REST for ``seconds``."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60, headers=headers or {}) as http:

        async def worker(w: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                client = RestClient(http, url + "/webhooks/rest/webhook")
                for text in kind.warmup:
                    await client.turn(text, 1)
                await client.turn(kind.timed(w * 1000 + i), 1)
                i += 1

        await asyncio.gather(*(worker(w) for w in range(8)))


def pid_listening(port: int) -> int:
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    if not match:
        raise RuntimeError(f"no process listens on {port}")
    return int(match.group(1))


# where a turn's own work happens (the server plumbing above it is 100% of everything)
WORK = re.compile(
    r"\((jsonschema/validators|rasa/core/actions/|rasa/core/policies/|rasa/nlu/|rasa/core/tracker_store"
    r"|bot/|actions/|knowledge/|shop/|sanic/request|json/)"
)


def heaviest_frames(svg: Path, top: int = 15) -> list[dict[str, Any]]:
    """The heaviest frames of the turn's own work (inclusive share), read from py-spy's SVG."""
    shares: dict[str, float] = {}
    for title in re.findall(r"<title>(.*?)</title>", svg.read_text(encoding="utf-8", errors="replace")):
        match = re.match(r"(.*) \((\d[\d,]*) samples?, ([\d.]+)%\)$", html.unescape(title))
        if match and WORK.search(match.group(1)):
            name, share = match.group(1), float(match.group(3))
            shares[name] = max(shares.get(name, 0.0), share)
    ranked = sorted(shares.items(), key=lambda x: -x[1])
    return [{"frame": n, "percent": s} for n, s in ranked[:top]]


def record_flame_graph(pid: int, output: Path, seconds: float | None = None) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into a flame graph: for ``seconds``, or until sent SIGINT (None)."""
    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    duration = ["--duration", str(int(seconds))] if seconds is not None else []
    options = ["--rate", "200", "--output", str(output), "--format", "flamegraph", "--nonblocking"]
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), *duration, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile(stack: Stack, kind: TurnKind, seconds: float) -> dict[str, Any]:
    targets = {
        "rasa": pid_listening(stack.settings.rasa_port),
        "actions": pid_listening(stack.settings.action_port),
    }
    recorders = {
        name: record_flame_graph(pid, RESULTS / f"flame-{name}.svg", seconds) for name, pid in targets.items()
    }
    time.sleep(1)
    asyncio.run(profile_load(f"http://127.0.0.1:{stack.settings.rasa_port}", kind, seconds, rest_auth(stack)))
    for recorder in recorders.values():
        recorder.wait(timeout=seconds + 60)
    return {
        "turn": kind.name,
        "seconds": seconds,
        "concurrency": 8,
        "flame_graphs": {name: f"bench/results/flame-{name}.svg" for name in targets},
        "heaviest": {name: heaviest_frames(RESULTS / f"flame-{name}.svg") for name in targets},
    }


def rest_auth(stack: Stack) -> dict[str, str]:
    """Our REST channel wants a client token (README: Security and privacy)."""
    return {"Authorization": f"Bearer {next(iter(stack.settings.rest_clients))}"}


def greeting(domain_path: Path) -> str:
    import yaml

    responses = yaml.safe_load(domain_path.read_text(encoding="utf-8"))["responses"]["utter_greet"]
    return str(responses[-1]["text"] if len(responses) > 1 else responses[0]["text"])


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "turns.json").write_text(
        json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    lines = [
        "# Turn speed",
        "",
        f"`make bench-turns` on {results['machine']}, {results['date']}. Latency of the timed turn in ms; "
        "turns/s counts every turn of the cell (warm-ups included).",
        "",
    ]
    for transport in ("rest", "socketio"):
        lines += [
            f"## {'REST' if transport == 'rest' else 'socket.io'}",
            "",
            "| turn | conversations | p50 | p90 | p99 | turns/s | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, levels in results[transport].items():
            for level, s in levels.items():
                lines.append(
                    f"| {kind} | {level} | {s['p50_ms']} | {s['p90_ms']} | {s['p99_ms']} | "
                    f"{s['turns_per_s']} | {s['errors']} |"
                )
        lines.append("")
    g = results["goal"]
    lines += [
        f"KB-answer turn p50 / stock greet p50 (REST, 1 conversation): {g['kb_to_stock_greet']}x "
        f"(goal <= {GOAL_KB_TO_STOCK_GREET}x: {'met' if g['met'] else 'not met'}); "
        f"errors at 128 conversations: {g['errors_at_128']}.",
        "",
    ]
    if "profile" in results:
        p = results["profile"]
        lines += [
            f"## Profile: {p['turn']} (slowest of ours), {p['concurrency']} conversations, {p['seconds']} s",
            "",
            "Flame graphs: "
            + ", ".join(f"[{n}]({Path(f).name})" for n, f in p["flame_graphs"].items())
            + ".",
            "",
        ]
        for name, frames in p["heaviest"].items():
            lines += [f"{name} - heaviest frames (inclusive % of samples):", ""]
            lines += [f"- {f['percent']}% `{f['frame']}`" for f in frames]
            lines.append("")
    (RESULTS / "turns.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile-seconds", type=float, default=20)
    parser.add_argument(
        "--render", action="store_true", help="only rewrite turns.md from turns.json and the flame graphs"
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads((RESULTS / "turns.json").read_text(encoding="utf-8"))
        for name, svg in results.get("profile", {}).get("flame_graphs", {}).items():
            results["profile"]["heaviest"][name] = heaviest_frames(ROOT / svg)
        write(results)
        print((RESULTS / "turns.md").read_text(encoding="utf-8"))
        return 0
    var = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    settings = private_settings(
        var,
        "benchturns",
        log_level="WARNING",
        rate_limit_burst=0,
        rate_limit_per_minute=0,  # turn cost, not the limiter
    )
    stack = Stack(settings=settings, log_dir=var / "log", start_redis=True)
    mood = Moodbot(var / "moodbot")
    print("training stock moodbot (rasa init) ...", flush=True)
    mood.create()
    greetings = {"stock": greeting(var / "moodbot" / "domain.yml"), "ours": greeting(ROOT / "domain.yml")}
    print("starting a private stack (Redis, action server, Rasa, handoff service) ...", flush=True)
    stack.start()
    try:
        stock_url = mood.serve()
        urls = {"stock": stock_url, "ours": f"http://127.0.0.1:{settings.rasa_port}"}
        measured = asyncio.run(measure_all(urls, greetings, rest_auth(stack)))
        mood.stop()
        ours_rest = {k: v for k, v in measured["rest"].items() if k.startswith("ours")}
        slowest = max(ours_rest, key=lambda k: ours_rest[k]["1"]["p50_ms"])
        kind = next(k for k in kinds(greetings) if k.name == slowest)
        print(f"profiling {slowest} with py-spy ...", flush=True)
        measured["profile"] = profile(stack, kind, args.profile_seconds)
    finally:
        mood.stop()
        stack.stop()
    kb = measured["rest"]["ours KB answer"]["1"]["p50_ms"]
    stock = measured["rest"]["stock greet"]["1"]["p50_ms"]
    at_128 = sum(measured[t][k]["128"]["errors"] for t in ("rest", "socketio") for k in measured[t])
    results = {
        "command": "make bench-turns",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} cores",
        "levels": LEVELS,
        "samples": SAMPLES,
        **measured,
        "goal": {
            "kb_to_stock_greet": round(kb / stock, 2),
            "met": kb / stock <= GOAL_KB_TO_STOCK_GREET and at_128 == 0,
            "errors_at_128": at_128,
        },
    }
    write(results)
    print((RESULTS / "turns.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
