"""actions.conversation: texts from the domain and the transcript."""

from typing import Any

from actions.conversation import customer_language, response_text, transcript
from tests.conftest import bot_event, make_tracker, user_event


def test_response_text_follows_the_language(domain: dict[str, Any]) -> None:
    assert response_text(domain, "utter_talk_to_person", "zh") == "转人工"
    assert response_text(domain, "utter_talk_to_person", "en") == "Talk to a person"
    assert response_text(domain, "no_such_response", "en") == ""


def test_language_defaults_to_english_until_known() -> None:
    assert customer_language(make_tracker()) == "en"
    assert customer_language(make_tracker(slots={"language": "zh"})) == "zh"


def test_transcript_shows_what_people_saw() -> None:
    events = [
        user_event("/greet", "greet", 1.0, automatic=True),
        bot_event("Hi!", 2.0),
        user_event(
            "",
            "message_too_long",
            3.0,
            rejected_message={"reason": "too_long", "chars": 9000, "preview": "aaa"},
        ),
        user_event("/ask_human", "ask_human", 4.0),
        {"event": "slot", "name": "language", "value": "en"},
    ]
    lines = transcript(make_tracker(events))
    assert [(line.speaker, line.text) for line in lines] == [
        ("customer", "[button] greet"),
        ("bot", "Hi!"),
        ("customer", "[too_long, 9000 chars] aaa"),
        ("customer", "[button] ask_human"),
    ]


def test_transcript_shows_a_photo_from_wechat_as_what_it_is() -> None:
    photo = user_event(
        "/empty_message",
        "empty_message",
        1.0,
        attachment={"type": "image", "url": "http://mmbiz.example/p.jpg"},
    )
    lines = transcript(make_tracker([photo, bot_event("请用文字输入您的问题。", 2.0)]))
    assert [(line.speaker, line.text) for line in lines] == [
        ("customer", "[image] http://mmbiz.example/p.jpg"),
        ("bot", "请用文字输入您的问题。"),
    ]
