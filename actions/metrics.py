"""Prometheus metrics of the action server, and its /metrics, /healthz and /readyz routes.

The counters say what the bot did for customers: knowledge-base outcomes
(answered, suggested, asked to rephrase, handed off), handoffs by reason and
priority, and every action's latency and failures. ``add_routes`` is applied
to rasa-sdk's app by actions/__main__.py; the labels are fixed vocabularies
(action names, reasons, languages), never customer text.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram

from common.health import add_health_routes

logger = logging.getLogger(__name__)

KB_OUTCOMES = Counter(
    "cs_kb_outcomes_total",
    "What a knowledge-base turn ended in: answer, curated, suggest, rephrase, handoff, unavailable",
    ["outcome", "language"],
)
HANDOFFS = Counter(
    "cs_handoffs_requested_total",
    "Handoff requests by reason, priority and outcome (queued, already_queued, spooled)",
    ["reason", "priority", "outcome"],
)
ACTION_SECONDS = Histogram(
    "cs_action_seconds",
    "Time an action took in the action server",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ACTION_FAILURES = Counter("cs_action_failures_total", "Actions that raised", ["action"])


def kb_outcome(outcome: str, language: str) -> None:
    KB_OUTCOMES.labels(outcome, language if language in ("zh", "en") else "other").inc()


def handoff_requested(reason: str, priority: str, outcome: str) -> None:
    HANDOFFS.labels(reason, priority, outcome).inc()


def time_actions(executor: Any) -> None:
    """Wrap ``executor.run`` so every action call is timed and its failures counted."""
    original = executor.run

    async def run(action_call: dict[str, Any]) -> Any:
        name = str(action_call.get("next_action") or "unknown")[:64]
        started = time.perf_counter()
        try:
            return await original(action_call)
        except BaseException:
            ACTION_FAILURES.labels(name).inc()
            raise
        finally:
            ACTION_SECONDS.labels(name).observe(time.perf_counter() - started)

    executor.run = run


async def _redis_ok() -> bool:
    from actions.handoff import default_queue

    try:
        return bool(await default_queue().client.ping())
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        logger.warning("readiness: Redis does not answer: %s", error)
        return False


async def _readiness(_: Any) -> dict[str, bool]:
    return {"redis": await _redis_ok()}


def add_routes(app: Any) -> None:
    """/metrics, /healthz and /readyz on rasa-sdk's Sanic app."""
    add_health_routes(app, _readiness)
