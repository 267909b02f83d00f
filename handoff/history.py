"""Turning a Rasa tracker into the customer-visible chat history.

The widget shows this after a reload. It lists what the customer saw: their
own messages (a button click as its title), the bot's and later the agents'
lines (an agent's with its name), with the buttons of the last bot message.
"""

from __future__ import annotations

from typing import Any


def offered_title(buttons: list[dict[str, Any]], payload: str, claimed: object) -> str | None:
    """The title the client names, if the bot's last buttons had it for this payload; else None.

    The title travels in the client's metadata: shown unchecked, a client could make its
    history say anything ("I agree to ...") beside the payload it really sent.
    """
    for button in buttons:
        if button.get("payload") == payload and button.get("title") == claimed:
            return str(claimed)
    return None


def history_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    offered: list[dict[str, Any]] = []  # the buttons of the latest bot message
    for event in events:
        kind = event.get("event")
        if kind == "user":
            metadata = event.get("metadata") or {}
            if not isinstance(metadata, dict):
                metadata = {}
            text = event.get("text") or ""
            rejected = metadata.get("rejected_message")
            if metadata.get("automatic"):
                continue
            title = offered_title(offered, text, metadata.get("button_title"))
            if title:
                text = title
            elif isinstance(rejected, dict):
                text = str(rejected.get("preview", "")) + "…"
            elif text.startswith("/"):
                continue
            if text:
                messages.append({"speaker": "customer", "text": text, "time": event.get("timestamp")})
        elif kind == "bot":
            data = event.get("data") or {}
            buttons = data.get("buttons") or data.get("quick_replies") or []
            offered = [b for b in buttons if isinstance(b, dict)]
            item: dict[str, Any] = {
                "speaker": "bot",
                "text": event.get("text") or "",
                "buttons": [{"title": b.get("title"), "payload": b.get("payload")} for b in buttons],
                "time": event.get("timestamp"),
            }
            agent = (event.get("metadata") or {}).get("agent")
            if agent:
                item["agent"] = str(agent)  # a person wrote it (the widget labels it)
            messages.append(item)
    return messages
