"""Messages the assistant cannot place: rephrase once, then a person."""

from __future__ import annotations

import json
import uuid

import pytest

from scripts.stack import Stack
from tests.integration.helpers import is_handoff, redis_client, say, texts

pytestmark = pytest.mark.integration


def handoff_records(stack: Stack) -> list[dict]:
    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    return [json.loads(fields["record"]) for _, fields in entries]


@pytest.mark.parametrize(
    ("language", "unclear", "still_unclear"),
    [("en", "xqzt vbnm plok", "zzkq wwpt yyq"), ("zh", "噼里啪啦咕噜咕噜", "叮叮当当咚咚锵")],
)
def test_noise_twice_reaches_a_person(stack: Stack, language: str, unclear: str, still_unclear: str) -> None:
    sender = "fb-" + uuid.uuid4().hex[:10]
    first = say(stack, sender, unclear)
    assert first[0]["text"] == texts("utter_kb_rephrase")[language]
    assert [b["payload"] for b in first[0]["buttons"]] == ["/ask_human"]
    assert first[0]["buttons"][0]["title"] == texts("utter_talk_to_person")[language]

    second = say(stack, sender, still_unclear)
    assert second[0]["text"] == texts("utter_kb_no_answer")[language] and is_handoff(
        second[1]["text"], language
    )
    assert len(second) == 2
    mine = [r for r in handoff_records(stack) if r["conversation_id"] == sender]
    assert len(mine) == 1 and mine[0]["reason"] == "second_fallback"
