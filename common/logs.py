"""How every process we run logs: personal data masked, one JSON object per line.

``install_redaction`` replaces the log record factory, so a record's message is
redacted (common.redaction) when the record is made - before any handler,
formatter or third-party logging set-up (Rasa configures its own handlers) can
write it anywhere. ``JsonFormatter`` writes the lines a log shipper wants,
with the conversation id as its own field: taken from the record
(``extra={"conversation_id": ...}``), else from the context variable the
request handlers set, else from the "conversation <id>" our log lines start with.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from datetime import datetime, timezone
from typing import Any

from common.redaction import redact

CONVERSATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("conversation_id", default=None)
# "conversation <id>: ..." (our lines), "sender_id=<id>" / "sender_id '<id>'" (Rasa's)
_MENTIONED_RE = re.compile(
    r"\bconversation '?([\w:.@-]{1,128}?)'?:(?:\s|$)|\bsender(?:_id)?(?:=| ')'?([\w:.@-]{1,128})"
)
LOG_FORMAT_ENV = "LOG_FORMAT"  # json (default for the services) or text
_installed = False


def install_redaction() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        return record

    logging.setLogRecordFactory(redacting_factory)
    _installed = True


def conversation_of(record: logging.LogRecord) -> str | None:
    explicit = getattr(record, "conversation_id", None)
    if explicit:
        return str(explicit)
    current = CONVERSATION_ID.get()
    if current:
        return current
    mentioned = _MENTIONED_RE.search(record.getMessage())
    return (mentioned.group(1) or mentioned.group(2)) if mentioned else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, service, conversation_id, message, exc."""

    def __init__(self, service: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service or os.environ.get("CS_SERVICE", "")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self.service:
            line["service"] = self.service
        conversation = conversation_of(record)
        if conversation:
            line["conversation_id"] = redact(conversation)
        if record.exc_info:
            # exception texts quote the data that failed, so they are redacted too
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def dict_config(service: str, level: str = "INFO", fmt: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for this process: JSON lines unless LOG_FORMAT=text.

    uvicorn takes it as ``log_config``; its own loggers are listed so their lines
    are JSON too instead of uvicorn's coloured text.
    """
    chosen = (fmt or os.environ.get(LOG_FORMAT_ENV) or "json").lower()
    formatter: dict[str, Any] = (
        {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
        if chosen == "text"
        else {"()": f"{__name__}.JsonFormatter", "service": service}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    own = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: dict(own) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure(service: str, level: str | int = "INFO", fmt: str | None = None) -> None:
    """Set up this process's logging: redaction always, JSON lines unless LOG_FORMAT=text."""
    import logging.config

    install_redaction()
    name = logging.getLevelName(level) if isinstance(level, int) else (level or "INFO")
    logging.config.dictConfig(dict_config(service, str(name), fmt))
