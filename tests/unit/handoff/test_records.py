"""handoff.records: the record survives the trip through Redis."""

from datetime import datetime, timezone

from handoff.records import HandoffRecord, Priority, Reason, TranscriptLine


def test_json_round_trip() -> None:
    record = HandoffRecord.build(
        conversation_id="c1",
        channel="socketio",
        language="zh",
        reason=Reason.URGENT_TOPIC,
        priority=Priority.URGENT,
        category="payment_dispute",
        summary="扣了两次钱",
        transcript=[TranscriptLine("customer", "扣了两次钱", "2026-11-23T10:00:00+00:00")],
        now=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc),
    )
    again = HandoffRecord.from_json(record.to_json())
    assert again == record
    assert again.sla_due == "2026-11-23T10:30:00+00:00"
    assert "扣了两次钱" in record.to_json()  # readable, not \u-escaped
