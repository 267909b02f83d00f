"""Prometheus gauges of the handoff queue, refreshed from Redis on every scrape.

The queue's numbers live in Redis (several web replicas, restarts): the
gauges show Redis's truth, not what one process happened to see. Counters
of what the bot did (turns, KB outcomes, handoff requests) are on the Rasa
and action servers' /metrics.
"""

from __future__ import annotations

from prometheus_client import Gauge

from handoff.queue import HandoffQueue

WAITING = Gauge("cs_queue_waiting", "Conversations waiting for an agent", ["priority"])
WITH_AGENT = Gauge("cs_queue_with_agent", "Conversations an agent holds")
AGENTS_ONLINE = Gauge("cs_agents_online", "Agents with the console open")
SLA_BREACHES = Gauge("cs_sla_breaches", "First responses late so far, plus waiting conversations overdue")
CSAT_RATINGS = Gauge("cs_csat_ratings", "Customer ratings given, by stars", ["rating"])
CSAT_AVERAGE = Gauge("cs_csat_average", "Average customer rating (1-5), 0 before the first")
HANDOFFS_BY_REASON = Gauge("cs_handoffs_by_reason", "Conversations handed to the queue", ["reason"])
CLOSED_TODAY = Gauge("cs_closed_today", "Conversations closed today (UTC)")


async def refresh(queue: HandoffQueue) -> None:
    """Set every gauge from the queue's statistics."""
    stats = await queue.stats()
    for priority, count in stats["waiting_by_priority"].items():
        WAITING.labels(priority).set(count)
    WITH_AGENT.set(stats["active"])
    AGENTS_ONLINE.set(stats["agents_online"])
    SLA_BREACHES.set(stats["sla_breaches"])
    for rating, count in stats["csat"]["distribution"].items():
        CSAT_RATINGS.labels(rating).set(count)
    CSAT_AVERAGE.set(stats["csat"]["average"] or 0)
    for reason, count in stats["handoffs_by_reason"].items():
        HANDOFFS_BY_REASON.labels(reason).set(count)
    CLOSED_TODAY.set(stats["closed_today"])
