"""The handoff record: what the bot hands to a person (ARCHITECTURE.md contract).

It crosses a process boundary (action server -> Redis -> handoff service), so
it is a plain dataclass with explicit JSON (de)serialisation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any


class Priority(str, Enum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


class Reason(str, Enum):
    CUSTOMER_REQUEST = "customer_request"
    URGENT_TOPIC = "urgent_topic"
    SECOND_FALLBACK = "second_fallback"
    LOW_CONFIDENCE = "low_confidence"
    VERIFICATION_FAILED = "verification_failed"
    ACTION_FAILURE = "action_failure"
    NOT_FOUND = "not_found"  # an order id or card code we do not know, given twice


# first-response SLA per priority; the handoff issue makes these configurable
FIRST_RESPONSE_SLA = {
    Priority.URGENT: timedelta(minutes=30),
    Priority.HIGH: timedelta(hours=1),
    Priority.NORMAL: timedelta(hours=4),
}


@dataclass(frozen=True)
class TranscriptLine:
    """One line of the conversation as the agent will read it."""

    speaker: str  # "customer" | "bot" | "agent"
    text: str
    time: str  # ISO 8601, UTC


@dataclass(frozen=True)
class HandoffRecord:
    conversation_id: str
    channel: str
    language: str
    reason: Reason
    priority: Priority
    category: str
    summary: str
    transcript: list[TranscriptLine]
    created: str
    sla_due: str
    state: str = "requested"
    entities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        conversation_id: str,
        channel: str,
        language: str,
        reason: Reason,
        priority: Priority,
        category: str,
        summary: str,
        transcript: list[TranscriptLine],
        entities: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> HandoffRecord:
        created = now or datetime.now(timezone.utc)
        return cls(
            conversation_id=conversation_id,
            channel=channel,
            language=language,
            reason=reason,
            priority=priority,
            category=category,
            summary=summary,
            transcript=transcript,
            created=created.isoformat(),
            sla_due=(created + FIRST_RESPONSE_SLA[priority]).isoformat(),
            entities=entities or {},
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["reason"] = self.reason.value
        data["priority"] = self.priority.value
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> HandoffRecord:
        data: dict[str, Any] = json.loads(raw)
        data["reason"] = Reason(data["reason"])
        data["priority"] = Priority(data["priority"])
        data["transcript"] = [TranscriptLine(**line) for line in data.get("transcript", [])]
        return cls(**data)
