"""bot.channels.socketio.WidgetOutput: agent lines tell the widget who wrote them (no network)."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.channels.socketio import WidgetOutput, WidgetSocketChannel


class Recorder:
    """Stands in for socketio.AsyncServer: keeps what would be emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any, str]] = []

    async def emit(self, event: str, data: Any, room: str) -> None:
        self.emitted.append((event, data, room))


def deliver(message: dict[str, Any]) -> list[Any]:
    sio = Recorder()
    asyncio.run(WidgetOutput(sio, "bot_uttered").send_response("conv-1", message))
    return [data for _, data, _ in sio.emitted]


def test_an_agents_line_names_the_agent() -> None:
    assert deliver({"text": "Hi, Anna here", "agent": "anna"}) == [{"text": "Hi, Anna here", "agent": "anna"}]


def test_a_bots_line_has_no_agent() -> None:
    assert deliver({"text": "Hello!"}) == [{"text": "Hello!"}]


def test_buttons_from_an_agent_keep_the_name_and_the_next_line_forgets_it() -> None:
    sio = Recorder()
    output = WidgetOutput(sio, "bot_uttered")
    buttons = [{"title": "5", "payload": "/rate"}]

    async def both() -> None:
        await output.send_response("c", {"text": "Rate us", "buttons": buttons, "agent": "anna"})
        await output.send_response("c", {"text": "Back with the assistant"})

    asyncio.run(both())
    first, second = (data for _, data, _ in sio.emitted)
    assert first["agent"] == "anna" and first["quick_replies"][0]["payload"] == "/rate"
    assert "agent" not in second


def test_the_api_output_channel_is_the_widget_output() -> None:
    channel = WidgetSocketChannel.from_credentials({})
    assert channel.get_output_channel() is None  # before the blueprint made the server
    channel.sio = Recorder()  # type: ignore[assignment]
    assert isinstance(channel.get_output_channel(), WidgetOutput)
