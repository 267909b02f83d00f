"""common.logs: every line JSON, the conversation id its own field, personal data masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from common import logs


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through JsonFormatter into a buffer, with the redacting record factory."""
    previous = logging.getLogRecordFactory()
    installed = logs._installed
    logs._installed = False
    logs.install_redaction()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter("web"))
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logging.setLogRecordFactory(previous)
    logs._installed = installed


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_is_json_with_the_conversation_id(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    logger.info("conversation %s: handed to the queue", "web-1234")
    (line,) = lines(buffer)
    assert line["conversation_id"] == "web-1234" and line["service"] == "web"
    assert line["level"] == "INFO" and line["logger"] == "tests.logs"
    assert line["message"] == "conversation web-1234: handed to the queue"


def test_the_context_variable_or_extra_names_the_conversation(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    token = logs.CONVERSATION_ID.set("tg:77")
    try:
        logger.info("looked up the order")
    finally:
        logs.CONVERSATION_ID.reset(token)
    logger.info("queued", extra={"conversation_id": "wx:abc"})
    logger.info("no conversation here")
    assert [line.get("conversation_id") for line in lines(buffer)] == ["tg:77", "wx:abc", None]


def test_personal_data_never_reaches_the_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    logger.info("customer wrote %r", "call 13812345678, mail li.lei@example.com, card 4111 1111 1111 1111")
    logger.warning("code %s failed", "K7QM-2XPA-9FTR-4WZD")
    try:
        raise ValueError("bad phone 13912345678")
    except ValueError:
        logger.exception("lookup failed")
    text = buffer.getvalue()
    for secret in ("13812345678", "li.lei@", "4111 1111 1111 1111", "2XPA-9FTR", "13912345678"):
        assert secret not in text
    first, second, third = lines(buffer)
    assert "138****5678" in str(first["message"]) and "l***@example.com" in str(first["message"])
    assert second["message"] == "code K7QM-****-****-4WZD failed"
    assert "139****5678" in str(third["exc"])


def test_other_handlers_get_redacted_records_too(captured: tuple[logging.Logger, io.StringIO]) -> None:
    """Rasa installs its own handlers and formatters: the record itself must already be clean."""
    logger, _ = captured
    plain = io.StringIO()
    handler = logging.StreamHandler(plain)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    try:
        logger.info("phone %s", "13812345678")
    finally:
        logger.removeHandler(handler)
    assert plain.getvalue().strip() == "phone 138****5678"


def test_a_broken_format_string_still_logs(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    logger.info("two %s %s", "args?")
    assert "two" in str(lines(buffer)[0]["message"])


def test_dict_config_is_text_on_request() -> None:
    config = logs.dict_config("web", "DEBUG", fmt="text")
    assert "format" in config["formatters"]["main"] and config["root"]["level"] == "DEBUG"
    assert logs.dict_config("web")["formatters"]["main"]["()"] == "common.logs.JsonFormatter"
    assert set(config["loggers"]) == {"uvicorn", "uvicorn.error", "uvicorn.access"}
