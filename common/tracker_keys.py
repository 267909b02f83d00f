"""Where a conversation's events live in Redis, for every process that reads them.

Rasa writes them through ``bot.tracker_store.WindowedRedisTrackerStore``; the
action server reads the part before the window when it needs the whole
conversation (the handoff transcript). Both run on different Python versions
and share only this module.

- ``{prefix}:tracker:{sender}:events``  list, one JSON event per item, oldest first;
- ``{prefix}:tracker:{sender}:window``  JSON ``{"from": index, "restore": [event, ...]}``:
  a turn loads the events from ``index`` on, preceded by ``restore`` (events that
  rebuild the slots, the active form and a pause as they were at ``index``).

Every restoring event carries ``metadata[RESTORED_BEFORE] = index``, so a
reader of a tracker can tell that events ``0 .. index-1`` exist but were not
loaded.
"""

from __future__ import annotations

RESTORED_BEFORE = "restored_before"


def events_key(prefix: str, sender_id: str) -> str:
    return f"{prefix}:tracker:{sender_id}:events"


def window_key(prefix: str, sender_id: str) -> str:
    return f"{prefix}:tracker:{sender_id}:window"


def window_start(events: list[dict]) -> int:
    """How many stored events precede a tracker's events (0 for a whole conversation)."""
    if not events:
        return 0
    metadata = events[0].get("metadata") or {}
    value = metadata.get(RESTORED_BEFORE)
    return int(value) if isinstance(value, int) and value > 0 else 0
