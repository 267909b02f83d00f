"""bot.speedups: the cached jsonschema.validate accepts and rejects exactly what jsonschema does."""

from __future__ import annotations

from typing import Any
from unittest import mock

import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction
from rasa.utils.endpoints import EndpointConfig

from bot import speedups

GOOD: dict[str, Any] = {
    "events": [{"event": "slot", "name": "language", "value": "en"}],
    "responses": [{"text": "hello", "buttons": [{"title": "A person", "payload": "/ask_human"}]}],
}
BAD: list[dict[str, Any]] = [
    {"events": "not a list", "responses": []},
    {"events": [{"no_event_key": 1}], "responses": []},
    {"events": [], "responses": "nope"},
]


@pytest.fixture
def action() -> RemoteAction:
    return RemoteAction("action_answer_from_kb", EndpointConfig("http://127.0.0.1:1"))


def test_answers_are_accepted_and_rejected_as_before(action: RemoteAction) -> None:
    schema = action.action_response_format_spec()
    for bad in BAD:
        with pytest.raises(jsonschema.ValidationError) as original:
            speedups._original_validate(bad, schema)
        with pytest.raises(jsonschema.ValidationError) as cached:
            speedups.cached_validate(bad, schema)
        assert cached.value.message == original.value.message
        assert list(cached.value.path) == list(original.value.path)
    speedups.cached_validate(GOOD, schema)


def test_the_schema_is_checked_once_not_on_every_answer(action: RemoteAction) -> None:
    speedups.install()
    assert jsonschema.validate is speedups.cached_validate
    speedups._validators.clear()
    validator_class = jsonschema.validators.validator_for(action.action_response_format_spec())
    with mock.patch.object(validator_class, "check_schema", wraps=validator_class.check_schema) as check:
        for _ in range(20):
            assert action._validate_action_result(GOOD)  # Rasa's own call site
        with pytest.raises(jsonschema.ValidationError):
            action._validate_action_result(BAD[0])
    assert check.call_count == 1


def test_an_invalid_schema_still_raises_schema_error() -> None:
    with pytest.raises(jsonschema.SchemaError):
        speedups.cached_validate({}, {"type": 12})
