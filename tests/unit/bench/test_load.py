"""The load benchmark's transcript audit: what counts as a lost, duplicated or unanswered line."""

from __future__ import annotations

from typing import Any

from bench.load import audit_transcript


def user(text: str) -> dict[str, Any]:
    return {"event": "user", "text": text}


def bot(text: str) -> dict[str, Any]:
    return {"event": "bot", "text": text}


LISTEN = {"event": "action", "name": "action_listen"}


def test_every_line_once_in_order_and_answered_passes() -> None:
    events = [LISTEN, user("hello"), bot("Hi!"), LISTEN, user("where is my order"), bot("Order id?"), LISTEN]
    assert audit_transcript(events, ["hello", "where is my order"]) is None


def test_a_line_missing_from_the_tracker_is_reported() -> None:
    events = [user("hello"), bot("Hi!")]
    problem = audit_transcript(events, ["hello", "8000"])
    assert problem is not None and "'8000'" in problem


def test_a_duplicated_line_is_reported() -> None:
    events = [user("hello"), bot("Hi!"), user("hello"), bot("Hi!")]
    assert audit_transcript(events, ["hello"]) is not None


def test_lines_out_of_order_are_reported() -> None:
    events = [user("b"), bot("1"), user("a"), bot("2")]
    assert audit_transcript(events, ["a", "b"]) is not None


def test_a_line_without_a_bot_line_after_it_is_reported_even_the_last() -> None:
    assert "'a'" in str(audit_transcript([user("a"), user("b"), bot("x")], ["a", "b"]))
    assert "'b'" in str(audit_transcript([user("a"), bot("x"), user("b"), LISTEN], ["a", "b"]))
