"""Speaking to customers through Rasa's HTTP API.

Agent lines, queue positions and the rating question are bot events appended
to the conversation's tracker with ``output_channel=latest``: Rasa delivers
them on whatever channel the customer last used, and they land in the
transcript like any bot line. ``pause`` keeps the bot silent while an agent
holds the conversation; ``resume`` gives it back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import yaml

from actions.conversation import response_text
from common.language import Language, normalise_language
from common.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)


class RasaUnavailable(RuntimeError):
    pass


class CustomerTexts:
    """Customer-facing texts the service sends; they live in domain.yml with all the others."""

    def __init__(self, domain_path: Path = PROJECT_ROOT / "domain.yml") -> None:
        self._domain: dict[str, Any] | None = None
        self._path = domain_path

    def get(self, response: str, language: str, **values: Any) -> str:
        if self._domain is None:
            self._domain = yaml.safe_load(self._path.read_text(encoding="utf-8"))
        lang: Language = normalise_language(language)
        return response_text(self._domain, response, lang).format(**values)


class RasaApi:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # created inside the running loop
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        return self._client

    async def append(self, conversation_id: str, events: list[dict[str, Any]], deliver: bool = True) -> None:
        params = {"token": self.token, "include_events": "NONE"}
        if deliver:
            params.update({"output_channel": "latest", "execute_side_effects": "true"})
        try:
            reply = await self.client().post(
                f"/conversations/{conversation_id}/tracker/events", params=params, json=events
            )
        except httpx.HTTPError as error:
            raise RasaUnavailable(f"Rasa unreachable: {error}") from error
        if reply.status_code != 200:
            raise RasaUnavailable(f"Rasa answered {reply.status_code}: {reply.text[:200]}")

    async def say(
        self,
        conversation_id: str,
        text: str,
        agent: str | None = None,
        buttons: list[dict[str, str]] | None = None,
    ) -> None:
        event: dict[str, Any] = {"event": "bot", "text": text, "metadata": {"agent": agent} if agent else {}}
        if buttons:
            event["data"] = {"buttons": buttons}
        await self.append(conversation_id, [event])

    async def pause(self, conversation_id: str) -> None:
        await self.append(conversation_id, [{"event": "pause"}], deliver=False)

    async def resume(self, conversation_id: str) -> None:
        await self.append(conversation_id, [{"event": "resume"}], deliver=False)

    async def tracker_events(self, conversation_id: str) -> list[dict[str, Any]]:
        reply = await self.client().get(
            f"/conversations/{conversation_id}/tracker", params={"token": self.token, "include_events": "ALL"}
        )
        if reply.status_code != 200:
            raise RasaUnavailable(f"Rasa answered {reply.status_code}")
        return list(reply.json().get("events") or [])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
