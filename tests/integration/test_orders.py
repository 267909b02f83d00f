"""Order lookup through the real stack (Rasa, action server, the seeded SQLite shop), in zh and en."""

from __future__ import annotations

import json
import uuid

import pytest

from scripts.stack import Stack
from tests.integration.helpers import handoff_records, is_handoff, say, texts

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_proof_limits")]

ORDER = "DG202611200001"  # seeded: Steam CNY 100, delivered, phone ends 8000
ASK = {"zh": "我想查一下我的订单", "en": "where is my order"}


def start(stack: Stack, language: str) -> str:
    sender = "order-" + uuid.uuid4().hex[:10]
    reply = say(stack, sender, ASK[language])
    assert reply[-1]["text"] == texts("utter_ask_order_lookup_form_order_id")[language]
    return sender


@pytest.mark.parametrize("language", ["zh", "en"])
def test_happy_path(stack: Stack, language: str) -> None:
    sender = start(stack, language)
    reply = say(stack, sender, ORDER)
    assert reply[-1]["text"] == texts("utter_ask_order_lookup_form_owner_proof")[language]
    assert "Steam" not in json.dumps(reply), "nothing about the order before the check"
    shown = say(stack, sender, "8000")[-1]["text"]
    assert ORDER in shown and "K7QM-****-****-4WZD" in shown and "2XPA" not in shown
    assert ("已发货" if language == "zh" else "delivered") in shown


@pytest.mark.parametrize("language", ["zh", "en"])
def test_wrong_owner_three_times_reaches_a_person(stack: Stack, language: str) -> None:
    sender = start(stack, language)
    say(stack, sender, ORDER)
    for _ in range(2):
        assert [m["text"] for m in say(stack, sender, "1234")] == [
            texts("utter_owner_check_failed")[language],
            texts("utter_ask_order_lookup_form_owner_proof")[language],
        ]
    last = say(stack, sender, "4321")
    assert last[0]["text"] == texts("utter_owner_check_locked")[language] and is_handoff(
        last[1]["text"], language
    )
    assert "Steam" not in json.dumps(last)
    (record,) = handoff_records(stack, sender)
    assert record["reason"] == "verification_failed" and record["priority"] == "high"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_unknown_order_id_is_asked_again(stack: Stack, language: str) -> None:
    sender = start(stack, language)
    reply = say(stack, sender, "DG000000000000")
    assert [m["text"] for m in reply] == [
        texts("utter_order_not_found")[language],
        texts("utter_ask_order_lookup_form_order_id")[language],
    ]
    assert say(stack, sender, ORDER)[-1]["text"] == texts("utter_ask_order_lookup_form_owner_proof")[language]


NEVER_MIND = {"zh": "算了，不用查了", "en": "never mind, forget it"}
HELLO = {"zh": "你好", "en": "hello"}


@pytest.mark.parametrize("language", ["zh", "en"])
def test_never_mind_stops_the_lookup_and_the_bot_goes_on(stack: Stack, language: str) -> None:
    sender = start(stack, language)
    say(stack, sender, ORDER)  # half way: the order id is given, the ownership proof is asked
    assert say(stack, sender, NEVER_MIND[language])[-1]["text"] == texts("utter_flow_stopped")[language]
    # the form is over: a greeting is a greeting again, not an answer to "the last 4 digits?"
    assert say(stack, sender, HELLO[language])[-1]["text"] == texts("utter_greet")[language]
    assert not handoff_records(stack, sender)
