"""common.ids: one shape of conversation id for every entry point."""

import pytest

from common.ids import valid_conversation_id


@pytest.mark.parametrize("value", ["a", "9f3c2a" * 5, "tg:12345", "wx:oABC_def-1", "x" * 128])
def test_accepts_safe_ids(value: str) -> None:
    assert valid_conversation_id(value)


@pytest.mark.parametrize("value", ["", "x" * 129, "a/b", "../etc", "a b", "ok\n", None, 7, "会话"])
def test_rejects_everything_else(value: object) -> None:
    assert not valid_conversation_id(value)
