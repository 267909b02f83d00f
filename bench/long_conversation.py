"""Long conversations: does turn 200 cost what turn 1 costs?

    make bench-long      (.venv; trains stock moodbot and starts a private stack, ~10 minutes on 2 cores)

One customer talks to the bot over REST, one message at a time, for 205
turns; the latency of every turn is recorded. Reported: the median at turns
1-10, 46-55 ("50"), 96-105 ("100") and 196-205 ("200"), pooled over
``--conversations`` conversations per system, and turn 200 / turn 1.

Systems, in the same run:
- stock: moodbot from `rasa init`, Rasa's default in-memory tracker store;
- stock + Redis: the same moodbot with Rasa's RedisTrackerStore;
- ours: the assistant (bot/tracker_store.WindowedRedisTrackerStore, Redis,
  the action server and the handoff service's event stream all running).

Messages alternate between a greeting and a second simple intent on each
system (moodbot: "hello" / "great"; ours: "hello" / "thanks"), so every turn
is the same kind of work and only the conversation's length changes.

Writes bench/results/long_conversation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.moodbot import Moodbot, redis_endpoints  # noqa: E402
from scripts.stack import Stack, private_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TURNS = 205
BUCKETS = {"1-10": (1, 10), "50": (46, 55), "100": (96, 105), "200": (196, 205)}
GOAL_RATIO = 1.5


def conversation(
    url: str, messages: list[str], sender_prefix: str, progress: tqdm, headers: dict[str, str] | None = None
) -> list[float]:
    """Latency in ms of each of TURNS turns of one new conversation (headers: our REST client's token)."""
    sender = f"{sender_prefix}-{uuid.uuid4().hex[:10]}"
    latencies = []
    with httpx.Client(timeout=60, headers=headers or {}) as client:
        for turn in range(TURNS):
            started = time.perf_counter()
            reply = client.post(url, json={"sender": sender, "message": messages[turn % len(messages)]})
            latencies.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            if not reply.json():
                raise RuntimeError(f"no reply at turn {turn + 1} of {sender}")
            progress.update(1)
    return latencies


def buckets(runs: list[list[float]]) -> dict[str, float]:
    result = {}
    for name, (first, last) in BUCKETS.items():
        pooled = [run[t - 1] for run in runs for t in range(first, last + 1)]
        result[name] = round(statistics.median(pooled), 1)
    result["ratio_200_to_1"] = round(result["200"] / result["1-10"], 2)
    return result


def measure(conversations: int) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="bench-long-"))
    settings = private_settings(
        var,
        "benchlong",
        log_level="WARNING",
        rate_limit_burst=0,
        rate_limit_per_minute=0,  # turn cost, not the limiter
    )
    stack = Stack(settings=settings, log_dir=var / "log", start_redis=True)
    mood = Moodbot(var / "moodbot")
    systems: dict[str, list[list[float]]] = {}
    total = 3 * conversations * TURNS
    print("training stock moodbot (rasa init) ...", flush=True)
    init_seconds = mood.create()
    print("starting a private stack (Redis, action server, Rasa, handoff service) ...", flush=True)
    stack.start()
    try:
        with tqdm(total=total, desc="turns", unit="turn", mininterval=2) as progress:
            ours = f"http://127.0.0.1:{settings.rasa_port}/webhooks/rest/webhook"
            auth = {"Authorization": f"Bearer {next(iter(settings.rest_clients))}"}
            systems["ours"] = [
                conversation(ours, ["hello", "thanks"], "web-long", progress, auth)
                for _ in range(conversations)
            ]
            for name, endpoints in (
                ("stock", None),
                ("stock + Redis", redis_endpoints(settings.local_redis_port, "benchstock")),
            ):
                url = mood.serve(endpoints, log_name=f"moodbot-{len(systems)}.log") + "/webhooks/rest/webhook"
                try:
                    systems[name] = [
                        conversation(url, ["hello", "great"], "stock", progress) for _ in range(conversations)
                    ]
                finally:
                    mood.stop()
    finally:
        mood.stop()
        stack.stop()
    return {
        "moodbot_init_seconds": round(init_seconds, 1),
        "medians_ms": {name: buckets(runs) for name, runs in systems.items()},
        "raw_ms": {name: [[round(v, 1) for v in run] for run in runs] for name, runs in systems.items()},
    }


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "long_conversation.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    lines = [
        "# Long conversations",
        "",
        f"`make bench-long` on {results['machine']}, {results['date']}: median turn latency (ms) over REST, "
        f"{results['conversations']} conversations x {TURNS} turns per system, one message at a time.",
        "",
        "| system | turns 1-10 | turn 50 | turn 100 | turn 200 | turn 200 / turn 1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in results["medians_ms"].items():
        lines.append(
            f"| {name} | {m['1-10']} | {m['50']} | {m['100']} | {m['200']} | {m['ratio_200_to_1']}x |"
        )
    lines += [
        "",
        f"Goal: ours within {GOAL_RATIO}x - {'met' if results['goal_met'] else 'not met'}. "
        "Turns 50/100/200 are the medians of turns 46-55, 96-105 and 196-205.",
    ]
    (RESULTS / "long_conversation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3, help="conversations per system")
    args = parser.parse_args()
    measured = measure(args.conversations)
    results = {
        "command": "make bench-long",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} cores",
        "conversations": args.conversations,
        "turns": TURNS,
        **measured,
        "goal_ratio": GOAL_RATIO,
        "goal_met": measured["medians_ms"]["ours"]["ratio_200_to_1"] <= GOAL_RATIO,
    }
    write(results)
    print((RESULTS / "long_conversation.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
