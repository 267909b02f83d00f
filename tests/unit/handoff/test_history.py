"""handoff.history: what the widget shows after a reload."""

from handoff.history import history_from_events


def test_history_shows_customer_and_bot_lines_with_last_buttons() -> None:
    events = [
        {"event": "user", "text": '/greet{"language":"zh"}', "metadata": {"automatic": True}, "timestamp": 1},
        {"event": "bot", "text": "您好", "data": {}, "timestamp": 2},
        {"event": "user", "text": "<b>卡密</b>", "metadata": {}, "timestamp": 3},
        {
            "event": "bot",
            "text": "要转人工吗",
            "timestamp": 4,
            "data": {"buttons": [{"title": "转人工", "payload": "/ask_human"}]},
        },
        {"event": "user", "text": "/ask_human", "metadata": {"button_title": "转人工"}, "timestamp": 5},
        {"event": "user", "text": "/deny", "metadata": {}, "timestamp": 6},
        {"event": "action", "name": "action_listen"},
    ]
    messages = history_from_events(events)
    assert [(m["speaker"], m["text"]) for m in messages] == [
        ("bot", "您好"),
        ("customer", "<b>卡密</b>"),
        ("bot", "要转人工吗"),
        ("customer", "转人工"),
    ]
    assert messages[2]["buttons"] == [{"title": "转人工", "payload": "/ask_human"}]


def test_an_agents_line_carries_the_agents_name_and_the_bots_does_not() -> None:
    events = [
        {"event": "bot", "text": "You're first in the queue.", "metadata": {}, "timestamp": 1},
        {"event": "bot", "text": "Hi, Anna here", "metadata": {"agent": "anna"}, "timestamp": 2},
    ]
    bot, agent = history_from_events(events)
    assert "agent" not in bot
    assert agent["agent"] == "anna" and agent["text"] == "Hi, Anna here"
