"""Turning a Rasa tracker into the customer-visible chat history.

The widget shows this after a reload. It lists what the customer saw: their
own messages (a button click as its title), the bot's and later the agents'
lines (an agent's with its name), with the buttons of the last bot message.
"""

from __future__ import annotations

from typing import Any


def history_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        if kind == "user":
            metadata = event.get("metadata") or {}
            text = event.get("text") or ""
            if metadata.get("automatic"):
                continue
            if metadata.get("button_title"):
                text = str(metadata["button_title"])
            elif metadata.get("rejected_message"):
                text = str(metadata["rejected_message"].get("preview", "")) + "…"
            elif text.startswith("/"):
                continue
            if text:
                messages.append({"speaker": "customer", "text": text, "time": event.get("timestamp")})
        elif kind == "bot":
            data = event.get("data") or {}
            buttons = data.get("buttons") or data.get("quick_replies") or []
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
