"""handoff.workers: what an agent is shown of channel events."""

from __future__ import annotations

from handoff.workers import customer_line, failure_line, worth_telling


def test_a_photo_shows_what_arrived() -> None:
    event = {
        "event": "user",
        "text": "/empty_message",
        "metadata": {"attachment": {"type": "image", "url": "http://mmbiz.example/p.jpg", "media_id": "m1"}},
    }
    assert customer_line(event) == ("customer", "[image] http://mmbiz.example/p.jpg", None)


def test_a_sticker_without_details_still_shows_its_kind() -> None:
    event = {"event": "user", "text": "/empty_message", "metadata": {"attachment": {"type": "sticker"}}}
    assert customer_line(event) == ("customer", "[sticker]", None)


def test_a_refused_wechat_message_is_explained() -> None:
    line = failure_line({"channel": "wechat", "code": "45015", "text": "您好"})
    assert line == (
        "Not delivered on wechat - the customer's 48-hour reply window on WeChat is over "
        '(they must write first): "您好"'
    )


def test_an_unknown_failure_shows_its_code_and_detail() -> None:
    assert failure_line({"channel": "telegram", "code": "400", "detail": "chat not found"}) == (
        "Not delivered on telegram - 400 chat not found"
    )


def test_messaging_apps_hear_only_meaningful_moves() -> None:
    assert worth_telling("wechat", None, 9)
    assert not worth_telling("telegram", 9, 8)
    assert worth_telling("telegram", 9, 4)
    assert worth_telling("socketio", 9, 8)
