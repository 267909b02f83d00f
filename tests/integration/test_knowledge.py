"""Knowledge-base answers through the real stack (Rasa, action server, web service, the built index).

The index is the one `make test`'s set-up builds from knowledge/articles
(var/knowledge); these tests talk to Rasa over REST like a channel does, and
to the web service's search endpoint like the agent console will.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from scripts.stack import ROOT, Stack
from tests.integration.helpers import agent_cookies, is_handoff, redis_client, say, texts

pytestmark = pytest.mark.integration


def search(stack: Stack, **params: object) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{stack.settings.web_port}/api/kb/search",
        params=params,
        cookies=agent_cookies(stack),
        timeout=30,
    )


def handoff_reasons(stack: Stack, sender: str) -> list[str]:
    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    return [
        json.loads(f["record"])["reason"]
        for _, f in entries
        if json.loads(f["record"])["conversation_id"] == sender
    ]


def new_sender() -> str:
    return "kb-" + uuid.uuid4().hex[:10]


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("充值一直没到账怎么办", "（来源：充值失败或未到账怎么办）"),
        ("how do I top up my game account", "(Source: How to top up a game account)"),
    ],
)
def test_routine_questions_are_answered_from_the_right_article(
    stack: Stack, question: str, source: str
) -> None:
    reply = say(stack, new_sender(), question)
    assert reply[0]["text"].endswith(source), reply
    assert reply[0]["buttons"][-1]["payload"] == "/ask_human"


@pytest.mark.parametrize(
    ("language", "question", "article"),
    [
        ("zh", "退款一般几天能到账", "refund-status"),
        ("en", "is an unredeemed code refundable", "refund-policy"),
    ],
)
def test_search_endpoint(stack: Stack, language: str, question: str, article: str) -> None:
    reply = search(stack, q=question, k=3)
    assert reply.status_code == 200
    body = reply.json()
    assert body["language"] == language and body["method"] == "hybrid"
    assert body["hits"][0]["article_id"] == article
    assert body["band"] in ("answer", "suggest", "handoff")
    assert 0 <= body["confidence"] <= 1 and body["thresholds"]["answer"] > body["thresholds"]["suggest"]
    assert {"title", "chunk", "score", "source", "chunk_id", "category"} <= set(body["hits"][0])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 501},
        {"q": "refund", "language": "fr"},
        {"q": "refund", "k": 0},
        {"q": "refund", "method": "magic"},
    ],
)
def test_search_endpoint_rejects_bad_input(stack: Stack, params: dict[str, object]) -> None:
    assert search(stack, **params).status_code == 422


def test_a_picked_suggestion_shows_the_article(stack: Stack) -> None:
    reply = say(stack, new_sender(), '/kb_article{"kb_article":"business-hours"}')
    assert "09:00" in reply[0]["text"]


@pytest.mark.parametrize(
    ("language", "question"),
    # vague on purpose: several payment articles fit and none is the answer
    [("zh", "关于付款"), ("en", "payment question")],
)
def test_unsure_answers_offer_titles_and_a_person(stack: Stack, language: str, question: str) -> None:
    sender = new_sender()
    reply = say(stack, sender, question)
    assert reply[0]["text"] == texts("utter_kb_suggest")[language]
    buttons = reply[0]["buttons"]
    assert 2 <= len(buttons) <= 4
    assert all(b["payload"].startswith('/kb_article{"kb_article":') for b in buttons[:-1])
    assert buttons[-1] == {"title": texts("utter_talk_to_person")[language], "payload": "/ask_human"}
    # picking one shows that article, in the same language
    picked = say(stack, sender, buttons[0]["payload"])
    source = {"zh": f"（来源：{buttons[0]['title']}）", "en": f"(Source: {buttons[0]['title']})"}[language]
    assert picked[0]["text"].endswith(source)
    assert handoff_reasons(stack, sender) == []


@pytest.mark.parametrize(
    ("language", "question"),
    [("zh", "我家猫咪会不会编程"), ("en", "where is your office located")],
)
def test_no_answer_hands_off_with_low_confidence(stack: Stack, language: str, question: str) -> None:
    sender = new_sender()
    reply = say(stack, sender, question)
    assert reply[0]["text"] == texts("utter_kb_no_answer")[language] and is_handoff(
        reply[1]["text"], language
    )
    assert len(reply) == 2
    assert handoff_reasons(stack, sender) == ["low_confidence"]


def _make_kb(articles: Path, index: Path) -> None:
    """`make kb`, exactly as an editor runs it after changing an article."""
    env = {**os.environ, "KB_ARTICLES_DIR": str(articles), "KB_INDEX_DIR": str(index)}
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "kb"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _answer_once(stack: Stack, question: str, marker: str, timeout: float = 30.0) -> str:
    """The bot's answer once it contains marker (the action server re-reads a rebuilt index within 1 s)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = say(stack, new_sender(), question)[0]["text"]
        if marker in text:
            return text
        # polling on purpose: the action server re-reads a rebuilt index on its next query; no event says so
        time.sleep(0.5)
    return text


def _mark_every_line(path: Path, marker: str) -> None:
    """An editor's change that whichever section the bot shows must carry: every body line gets marker."""
    head, body = path.read_text("utf-8").split("\n---\n", 1)
    lines = [
        f"{line}{marker}" if line.strip() and not line.startswith("#") else line for line in body.splitlines()
    ]
    path.write_text(head + "\n---\n" + "\n".join(lines) + "\n", "utf-8")


def test_an_edited_article_changes_the_answer_after_make_kb_alone(stack: Stack, tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    shutil.copytree(ROOT / "knowledge" / "articles", articles)
    index = tmp_path / "index"
    _make_kb(articles, index)
    model_before = sorted(p.name for p in (ROOT / "models").glob("*.tar.gz"))
    extra = {"KB_ARTICLES_DIR": str(articles), "KB_INDEX_DIR": str(index)}
    stack.stop_service("actions")
    stack.restart_service("actions", extra_env=extra)
    try:
        questions = {"en": "how do I top up my game account", "zh": "游戏直充怎么操作"}
        sources = {"en": "(Source: How to top up a game account)", "zh": "（来源：如何给游戏账号直充）"}
        marker = {"en": " (updated this week)", "zh": "（本周已更新）"}
        for language, question in questions.items():
            before = say(stack, new_sender(), question)[0]["text"]
            assert before.endswith(sources[language]) and marker[language] not in before, before
            _mark_every_line(articles / language / "recharge-game-topup.md", marker[language])
        _make_kb(articles, index)
        for language, question in questions.items():
            after = _answer_once(stack, question, marker[language])
            assert marker[language] in after and after.endswith(sources[language]), after
        # no retraining: the Rasa model is the one from before
        assert sorted(p.name for p in (ROOT / "models").glob("*.tar.gz")) == model_before
    finally:
        stack.stop_service("actions")
        stack.restart_service("actions")
