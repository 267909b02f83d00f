"""handoff.records: first-response and resolution targets per priority, configurable from the environment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from handoff.records import HandoffRecord, Priority, Reason, sla_for


def build(priority: Priority) -> HandoffRecord:
    return HandoffRecord.build(
        conversation_id="c1",
        channel="rest",
        language="en",
        reason=Reason.URGENT_TOPIC,
        priority=priority,
        category="card_dispute",
        summary="",
        transcript=[],
        now=datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc),
    )


def test_defaults_put_urgent_first(monkeypatch: pytest.MonkeyPatch) -> None:
    for priority in Priority:
        monkeypatch.delenv(f"HANDOFF_SLA_{priority.value.upper()}", raising=False)
    monkeypatch.setattr("common.settings.load_env_file", lambda *a, **k: {})
    assert sla_for(Priority.URGENT) == (timedelta(minutes=30), timedelta(hours=24))
    record = build(Priority.URGENT)
    assert record.sla_due == "2026-11-23T12:30:00+00:00"
    assert record.resolution_due == "2026-11-24T12:00:00+00:00"
    assert sla_for(Priority.HIGH)[0] < sla_for(Priority.NORMAL)[0]


def test_the_environment_overrides_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_SLA_NORMAL", "15m,2d")
    assert sla_for(Priority.NORMAL) == (timedelta(minutes=15), timedelta(days=2))
    assert build(Priority.NORMAL).sla_due == "2026-11-23T12:15:00+00:00"
    monkeypatch.setenv("HANDOFF_SLA_HIGH", "soon")
    with pytest.raises(ValueError, match="HANDOFF_SLA_HIGH"):
        sla_for(Priority.HIGH)


def test_records_from_before_the_resolution_target_still_load() -> None:
    record = build(Priority.HIGH)
    old = record.to_json().replace(f', "resolution_due": "{record.resolution_due}"', "")
    assert "resolution_due" not in old
    assert HandoffRecord.from_json(old).resolution_due == ""
