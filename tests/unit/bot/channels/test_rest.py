"""bot.channels.rest: request validation (the HTTP round trip is in tests/integration)."""

import json
from dataclasses import dataclass

import pytest
from sanic.response import HTTPResponse

from bot.channels.rest import MAX_BODY_BYTES, RestChannel


@dataclass
class FakeRequest:
    body: bytes


def parse(body: bytes) -> object:
    return RestChannel()._parse(FakeRequest(body))  # type: ignore[arg-type]


def error_of(result: object) -> tuple[int, str]:
    assert isinstance(result, HTTPResponse)
    return result.status, json.loads(result.body)["error"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"message": "hi"}', 400, "missing_sender"),
        (b'{"sender": "", "message": "hi"}', 400, "invalid_sender"),
        (b'{"sender": "a b", "message": "hi"}', 400, "invalid_sender"),
        (b'{"sender": "u1", "message": ["hi"]}', 400, "invalid_message"),
        (b'{"sender": "u1", "message": "hi", "metadata": "x"}', 400, "invalid_metadata"),
        (b'{"sender": "u1", "message": "' + b"a" * MAX_BODY_BYTES + b'"}', 413, "body_too_large"),
    ],
)
def test_bad_requests_get_a_clear_error(body: bytes, status: int, code: str) -> None:
    assert error_of(parse(body)) == (status, code)


def test_good_request_is_parsed() -> None:
    assert parse(b'{"sender": "u1", "message": "hi"}') == {"sender": "u1", "message": "hi"}


def test_from_credentials_reads_the_limit() -> None:
    channel = RestChannel.from_credentials({"max_message_chars": "500"})
    assert isinstance(channel, RestChannel) and channel.max_message_chars == 500
