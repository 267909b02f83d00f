"""bot.action_fallback: an action server that does not answer gives an apology, never silence.

The action endpoint is a closed loopback port (connection refused, as after
kill -9); the handoff that then runs in the Rasa process is tested against
Redis in tests/integration/bot/test_action_fallback.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
from rasa.core.channels.channel import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from bot import action_fallback

ROOT = Path(__file__).resolve().parents[3]
CLOSED = EndpointConfig("http://127.0.0.1:1/webhook")


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture(autouse=True)
def installed() -> None:
    action_fallback.install()


def tracker(domain: Domain, language: str, *extra: object) -> DialogueStateTracker:
    events = [SlotSet("language", language), UserUttered("where is my order"), *extra]
    return DialogueStateTracker.from_events("web-away", events, slots=domain.slots)


def run(action: RemoteAction, domain: Domain, state: DialogueStateTracker) -> list[object]:
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    return asyncio.run(action.run(CollectingOutputChannel(), nlg, state, domain))


@pytest.mark.parametrize(
    ("language", "expected"), [("zh", "抱歉，我们的系统暂时出了点问题"), ("en", "Sorry, part of our system")]
)
def test_a_refused_action_server_gives_an_apology_and_a_person_in_the_customers_language(
    domain: Domain, language: str, expected: str
) -> None:
    events = run(RemoteAction("action_show_order", CLOSED), domain, tracker(domain, language))
    assert len(events) == 1 and isinstance(events[0], BotUttered)
    assert events[0].text.startswith(expected)
    buttons = events[0].data["buttons"]
    assert [b["payload"] for b in buttons] == ["/ask_human"]


def test_a_forms_validation_clears_what_it_could_not_check(domain: Domain) -> None:
    state = tracker(
        domain,
        "en",
        ActionExecuted("order_lookup_form"),
        SlotSet("requested_slot", "order_id"),
        SlotSet("order_id", "DG202611230017"),
    )
    events = run(RemoteAction("validate_order_lookup_form", CLOSED), domain, state)
    assert isinstance(events[0], BotUttered)
    assert events[1:] == [SlotSet("order_id", None)]


def test_only_an_absent_action_server_counts_as_away() -> None:
    def chained(cause: BaseException) -> RasaException:
        """What RemoteAction raises: a RasaException raised while handling aiohttp's error."""
        try:
            try:
                raise cause
            except BaseException:
                raise RasaException("Failed to execute custom action")  # noqa: B904 - as Rasa does
        except RasaException as error:
            return error

    assert action_fallback.action_server_away(chained(aiohttp.ClientConnectionError("refused")))
    assert action_fallback.action_server_away(asyncio.TimeoutError())
    # the action rejected the turn (a form's own signal), or Rasa is misconfigured: not ours to hide
    assert not action_fallback.action_server_away(ActionExecutionRejection("validate_x"))
    assert not action_fallback.action_server_away(RasaException("no endpoint configured"))
    assert not action_fallback.action_server_away(ValueError("a bug"))


def test_installing_twice_wraps_once() -> None:
    first = RemoteAction.run
    action_fallback.install()
    assert RemoteAction.run is first
