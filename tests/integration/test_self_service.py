"""Card-code recheck and refunds through the real stack, in zh and en.

Starts nothing of its own except, for the timeout tests, a TCP listener that
accepts connections and never answers (a shop that hangs); the action server
is restarted pointing at it and restored afterwards. Uses the session stack
(private Redis, Rasa, action server, web service, seeded SQLite shop).
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, delete, func, select, update

from scripts.stack import Stack
from shop.schema import CardCodeRow, OutboxRow, ResendRow
from tests.integration.helpers import handoff_records, is_handoff, redis_client, say, texts

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_proof_limits")]

# seeded in shop/seed.py
DELIVERED = "K7QM-2XPA-9FTR-4WZD"  # order DG202611200001, Li Wei, phone ends 8000
PENDING = "P4XJ-7NWE-3GHU-6CZA"  # order DG202611210003, Emma Clarke, phone ends 0123
REDEEMED_ORDER = "DG202611200002"  # Li Wei, its code H3LN-8VQC-5RTY-2KMB was redeemed
EXPIRED = "X9TB-4MRV-8QPL-3DEF"
FULL_CODES = [DELIVERED, PENDING, "H3LN-8VQC-5RTY-2KMB", EXPIRED]
CARD_ASK = {"zh": "我的卡密用不了", "en": "my gift card code doesn't work"}
REFUND_ASK = {"zh": "我要申请退款", "en": "I want a refund for my order"}


def sender(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def outbox_count(stack: Stack, code: str) -> int:
    engine = create_engine(f"sqlite:///{stack.settings.var_dir / 'shop.sqlite3'}")
    with engine.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.body.contains(code))
        )
    engine.dispose()
    return int(count or 0)


def forget_resends(stack: Stack, code: str) -> None:
    """Open the code's resend window again: other modules on the session stack may have used it."""
    engine = create_engine(f"sqlite:///{stack.settings.var_dir / 'shop.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(update(CardCodeRow).where(CardCodeRow.code == code).values(last_resend_at=None))
        connection.execute(delete(ResendRow).where(ResendRow.code == code))
    engine.dispose()


def card_start(stack: Stack, language: str) -> str:
    conversation = sender("card")
    reply = say(stack, conversation, CARD_ASK[language])
    assert reply[-1]["text"] == texts("utter_ask_card_recheck_form_card_lookup")[language]
    return conversation


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_code_typed_in_full_is_checked_and_resent_once(stack: Stack, language: str) -> None:
    code = DELIVERED if language == "en" else PENDING
    forget_resends(stack, code)
    before = outbox_count(stack, code)
    conversation = card_start(stack, language)
    # customers type codes in lower case with spaces too
    reply = say(stack, conversation, code.lower().replace("-", " "))
    (message,) = reply
    masked = f"{code[:4]}-****-****-{code[-4:]}"
    assert masked in message["text"] and code not in json.dumps(reply)
    assert ("参考号 RS" if language == "zh" else "(reference RS") in message["text"]
    assert outbox_count(stack, code) == before + 1

    # the same code again within 10 minutes: the earlier resend stands, nothing is sent
    again = card_start(stack, language)
    second = say(stack, again, f"卡密 {code}" if language == "zh" else f"code {code}")[0]["text"]
    assert ("已经重新发送" if language == "zh" else "already resent") in second
    assert outbox_count(stack, code) == before + 1


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_redeemed_code_not_redeemed_by_the_customer_is_an_urgent_dispute(
    stack: Stack, language: str
) -> None:
    conversation = card_start(stack, language)
    asked = say(stack, conversation, REDEEMED_ORDER)[-1]["text"]
    assert asked == texts("utter_ask_card_recheck_form_owner_proof")[language]
    question = say(stack, conversation, "8000")[-1]
    assert "H3LN-****-****-2KMB" in question["text"]
    assert [b["payload"] for b in question["buttons"]] == ["/affirm", "/deny"]
    reply = say(stack, conversation, "不是我" if language == "zh" else "no, it wasn't me")
    assert reply[-1]["text"] == texts("utter_handoff_urgent")[language]
    (record,) = handoff_records(stack, conversation)
    assert record["category"] == "card_dispute" and record["priority"] == "urgent"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_expired_code_is_explained_and_a_person_offered(stack: Stack, language: str) -> None:
    conversation = card_start(stack, language)
    (message,) = say(stack, conversation, EXPIRED)
    assert ("已于" if language == "zh" else "expired on") in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/ask_human"]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_unknown_code_twice_reaches_a_person(stack: Stack, language: str) -> None:
    conversation = card_start(stack, language)
    first = say(stack, conversation, "ZZZZ-1111-2222-3333")
    assert [m["text"] for m in first] == [
        texts("utter_card_not_found")[language],
        texts("utter_ask_card_recheck_form_card_lookup")[language],
    ]
    second = say(stack, conversation, "ZZZZ-1111-2222-3334")
    assert second[0]["text"] == texts("utter_lookup_not_found_twice")[language] and is_handoff(
        second[1]["text"], language
    )
    (record,) = handoff_records(stack, conversation)
    assert record["reason"] == "not_found"
    assert "ZZZZ-1111-2222-3333" not in json.dumps(record)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_card_recheck_by_order_id_with_the_wrong_owner_three_times(stack: Stack, language: str) -> None:
    conversation = card_start(stack, language)
    say(stack, conversation, REDEEMED_ORDER)
    for proof in ("1234", "0000"):
        assert say(stack, conversation, proof)[0]["text"] == texts("utter_owner_check_failed")[language]
    last = say(stack, conversation, "4321")
    assert last[0]["text"] == texts("utter_owner_check_locked")[language] and is_handoff(
        last[1]["text"], language
    )
    assert "H3LN" not in json.dumps(last), "nothing about the order's codes before the check"
    (record,) = handoff_records(stack, conversation)
    assert record["reason"] == "verification_failed"


@pytest.mark.parametrize(
    ("language", "order", "proof"), [("en", "DG202611200001", "8000"), ("zh", "DG202611210003", "0123")]
)
def test_a_refund_inside_the_policy_gets_a_ticket(
    stack: Stack, language: str, order: str, proof: str
) -> None:
    conversation = sender("refund")
    assert (
        say(stack, conversation, REFUND_ASK[language])[-1]["text"]
        == texts("utter_ask_refund_form_order_id")[language]
    )
    assert say(stack, conversation, order)[-1]["text"] == texts("utter_ask_refund_form_owner_proof")[language]
    created = say(stack, conversation, proof)[0]["text"]
    assert order in created and ("参考号 RF" if language == "zh" else "your reference is RF") in created
    reference = created.split("RF", 1)[1][:8]
    # asking again shows the same ticket
    again = sender("refund")
    say(stack, again, REFUND_ASK[language])
    say(stack, again, order)
    assert f"RF{reference}" in say(stack, again, proof)[0]["text"]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_refund_outside_the_policy_is_explained(stack: Stack, language: str) -> None:
    conversation = sender("refund")
    say(stack, conversation, REFUND_ASK[language])
    say(stack, conversation, REDEEMED_ORDER)
    (message,) = say(stack, conversation, "liwei@example.com")
    assert message["text"] == texts("utter_refund_declined_redeemed")[language].format(
        order_id=REDEEMED_ORDER
    )
    assert [b["payload"] for b in message["buttons"]] == ["/ask_human"]


def test_no_full_card_code_in_redis_or_the_logs(stack: Stack) -> None:
    """After the card conversations above: the tracker store, the handoff stream and every log are scanned."""
    conversation = card_start(stack, "en")
    say(stack, conversation, f"it is {EXPIRED}")
    client = redis_client(stack)
    raw = redis.Redis.from_url(stack.settings.redis_url)  # binary strings too (the analytics' HyperLogLogs)
    dumped: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            dumped.append((raw.get(key) or b"").decode("utf-8", "replace"))
        elif kind == "list":
            dumped.extend(client.lrange(key, 0, -1))
        elif kind == "hash":
            dumped.append(json.dumps(client.hgetall(key)))
        elif kind == "stream":
            dumped.extend(json.dumps(fields) for _, fields in client.xrange(key))
        elif kind == "zset":
            dumped.extend(client.zrange(key, 0, -1))
        elif kind == "set":
            dumped.extend(client.smembers(key))
    redis_text = "\n".join(dumped)
    assert EXPIRED[:4] + "-****-****-" + EXPIRED[-4:] in redis_text, "the scan sees the conversation"
    logs = "\n".join(path.read_text(errors="replace") for path in stack.log_dir.glob("*.log"))
    spool = "\n".join(p.read_text(errors="replace") for p in stack.settings.var_dir.rglob("*.jsonl"))
    for code in FULL_CODES:
        for where, text in (("redis", redis_text), ("logs", logs), ("spool", spool)):
            assert code not in text, f"full card code {code} found in {where}"
            assert code[5:] not in text, f"the hidden part of {code} found in {where}"


# -- a shop that hangs ------------------------------------------------------------


@pytest.fixture
def hanging_shop(stack: Stack) -> Iterator[str]:
    """The action server pointed at a shop that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    stack.stop_service("actions")
    stack.restart_service("actions", {"SHOP_API_URL": url, "SHOP_API_TOKEN": "test"})
    try:
        yield url
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
        stack.stop_service("actions")
        stack.restart_service("actions")


FLOWS: list[tuple[str, dict[str, str], list[str]]] = [
    ("card", CARD_ASK, [DELIVERED]),
    ("refund", REFUND_ASK, ["DG202611200001"]),
    ("order", {"zh": "我想查一下我的订单", "en": "where is my order"}, ["DG202611200001"]),
]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_hanging_shop_gets_an_apology_and_a_person_in_every_flow(
    stack: Stack, hanging_shop: str, language: str
) -> None:
    for flow, ask, answers in FLOWS:
        conversation = sender(f"hang-{flow}")
        say(stack, conversation, ask[language])
        reply: list[dict[str, Any]] = []
        for answer in answers:
            reply = say(stack, conversation, answer)
        assert reply[0]["text"] == texts("utter_shop_unavailable")[language] and is_handoff(
            reply[1]["text"], language
        ), flow
        (record,) = handoff_records(stack, conversation)
        assert record["reason"] == "action_failure" and record["priority"] == "high"
