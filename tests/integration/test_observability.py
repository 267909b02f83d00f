"""/healthz, /readyz and /metrics of every service, against the real stack.

A conversation must move the counters: turns on Rasa, knowledge-base outcomes,
action timings and handoff requests on the action server, and the queue's
gauges on the web service.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.stack import Stack
from tests.integration.helpers import is_handoff, say

pytestmark = pytest.mark.integration


def base_urls(stack: Stack) -> dict[str, str]:
    s = stack.settings
    return {
        "rasa": f"http://127.0.0.1:{s.rasa_port}",
        "actions": f"http://127.0.0.1:{s.action_port}",
        "web": f"http://127.0.0.1:{s.web_port}",
    }


def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by name and sorted labels."""
    reply = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.mark.parametrize("service", ["rasa", "actions", "web"])
def test_every_service_is_healthy_and_ready(stack: Stack, service: str) -> None:
    url = base_urls(stack)[service]
    assert httpx.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert all(ready.json()["checks"].values())


def test_a_conversation_moves_the_counters(stack: Stack) -> None:
    urls = base_urls(stack)
    before = {name: scrape(url, stack.settings.metrics_token) for name, url in urls.items()}
    sender = "it-metrics-" + uuid.uuid4().hex[:8]
    say(stack, sender, "hello")
    say(stack, sender, "how do I top up Genshin?")
    replies = say(stack, sender, "I want a human")
    assert is_handoff(replies[-1]["text"], "en")
    after = {name: scrape(url, stack.settings.metrics_token) for name, url in urls.items()}

    def moved(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    assert moved("rasa", "cs_turns_total", channel="rest") == 3
    assert moved("rasa", "cs_turn_seconds_count", channel="rest") == 3
    assert moved("actions", "cs_kb_outcomes_total", language="en") >= 1
    assert moved("actions", "cs_action_seconds_count", action="action_kb_answer") >= 1
    assert moved("actions", "cs_handoffs_requested_total", reason="customer_request", outcome="queued") == 1
    # the web service's workers admit the request into the queue a moment later
    deadline = time.monotonic() + 10
    queued = {"reason": "customer_request"}
    while moved("web", "cs_handoffs_by_reason", **queued) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        after["web"] = scrape(urls["web"], stack.settings.metrics_token)
    assert moved("web", "cs_handoffs_by_reason", reason="customer_request") >= 1
    assert total(after["web"], "cs_queue_waiting") >= 1
    # labels are fixed vocabularies, never what the customer wrote
    for samples in after.values():
        for _, labels in samples:
            assert all("Genshin" not in value and sender not in value for _, value in labels)
