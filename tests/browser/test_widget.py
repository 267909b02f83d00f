"""The web widget in Debian's headless chromium (Playwright, no browser download).

Starts the real stack (tests/conftest.py) and drives the demo page like a customer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from scripts.stack import Stack
from tests.integration.helpers import is_handoff, is_kb_answer, texts

pytestmark = pytest.mark.browser

ARTIFACTS = Path("var/test-results/browser")
TIMEOUT = 30_000
ROOT = "document.querySelector('#starcard-chat').shadowRoot"


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"http://127.0.0.1:{stack.settings.web_port}/")
    yield page
    context.close()


def bot_texts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#starcard-chat .bot").all_inner_texts()]


def send(page: Any, text: str) -> None:
    before = page.locator("#starcard-chat .bot").count()
    page.locator("#starcard-chat textarea").fill(text)
    page.locator("#starcard-chat textarea").press("Enter")
    page.wait_for_function(
        "n => document.querySelector('#starcard-chat').shadowRoot.querySelectorAll('.bot').length > n",
        arg=before,
    )


def test_chat_in_chinese_and_english_click_a_button_and_reload(page: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the widget opens and greets in the page's language
    page.wait_for_function("() => document.querySelector('#starcard-chat').shadowRoot.querySelector('.bot')")
    assert bot_texts(page)[0] == texts("utter_greet")["en"]

    send(page, "你好")
    assert bot_texts(page)[-1] == texts("utter_greet")["zh"]
    send(page, "hello")
    assert bot_texts(page)[-1] == texts("utter_greet")["en"]

    send(page, "how do I redeem a steam gift card")
    answer = bot_texts(page)[-1]
    # answered from a card-code article: every informational answer comes from the articles
    assert is_kb_answer(answer, "en")
    before = page.locator("#starcard-chat .bot").count()
    page.locator("#starcard-chat .buttons button", has_text="Talk to a person").last.click()
    page.wait_for_function(
        "n => document.querySelector('#starcard-chat').shadowRoot.querySelectorAll('.bot').length > n",
        arg=before,
    )
    # the queue's position notice may already follow the announcement
    assert any(is_handoff(text, "en") for text in bot_texts(page)[before:])
    users = page.locator("#starcard-chat .user").all_inner_texts()
    assert users[-1] == "Talk to a person"  # the click shows its title, not the payload
    page.screenshot(path=str(ARTIFACTS / "widget-desktop.png"))

    # the queue's position notice follows the announcement; let the conversation settle first
    shown: list[str] = []
    while shown != page.locator("#starcard-chat .msg").all_inner_texts():
        shown = page.locator("#starcard-chat .msg").all_inner_texts()
        page.wait_for_timeout(1500)
    page.reload()
    page.wait_for_function(
        "n => document.querySelector('#starcard-chat').shadowRoot.querySelectorAll('.msg').length >= n",
        arg=len(shown),
    )
    assert page.locator("#starcard-chat .msg").all_inner_texts() == shown


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("充值一直没到账怎么办", "（来源：充值失败或未到账怎么办）"),
        ("how do I top up my game account", "(Source: How to top up a game account)"),
    ],
)
def test_knowledge_answers_in_the_customers_language(page: Any, question: str, source: str) -> None:
    page.wait_for_function("() => document.querySelector('#starcard-chat').shadowRoot.querySelector('.bot')")
    send(page, question)
    answer = bot_texts(page)[-1]
    assert answer.endswith(source)
    assert len(answer) > len(source) + 40, "the article's text, not just its title"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"widget-kb-{'zh' if source.startswith('（') else 'en'}.png"))


def test_customer_html_is_shown_as_text(page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.wait_for_function("() => document.querySelector('#starcard-chat').shadowRoot.querySelector('.bot')")
    attack = "<img src=x onerror=alert(1)>"
    send(page, attack)
    assert page.locator("#starcard-chat .user").last.inner_text() == attack
    assert page.locator("#starcard-chat .log img").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []


def test_agent_and_knowledge_markup_is_shown_as_text(page: Any, stack: Stack) -> None:
    """An agent line and a knowledge answer with button titles, carrying markup, stay text.

    Both reach the widget as bot messages: the agent's through Rasa's tracker events API
    (handoff/rasa_api.py, the console's path), the knowledge answer as the action server's
    message with article titles on its buttons.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from handoff.rasa_api import RasaApi

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.wait_for_function("() => document.querySelector('#starcard-chat').shadowRoot.querySelector('.bot')")
    send(page, "hello")
    session = page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage)"
        ".find(k => k.startsWith('starcard-chat:'))))['session_id']"
    )
    agent_line = "<img src=x onerror=alert(7)> your code is fine"
    kb_answer = "<script>alert(8)</script>Top up in **Wallet**\n(Source: <a href=javascript:alert(9)>x</a>)"
    buttons = [{"title": "<img src=y onerror=alert(10)>", "payload": "/ask_human"}]

    async def deliver() -> None:
        api = RasaApi(stack.settings.rasa_url, stack.settings.rasa_token)
        try:
            await api.say(session, agent_line, agent="tester")
            await api.say(session, kb_answer, buttons=buttons)
        finally:
            await api.close()

    before = page.locator("#starcard-chat .bot").count()
    # Playwright's sync API runs a loop in this thread: deliver from another one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, deliver()).result(timeout=30)
    page.wait_for_function(
        "n => document.querySelector('#starcard-chat').shadowRoot.querySelectorAll('.bot').length >= n + 2",
        arg=before,
    )
    shown = bot_texts(page)
    assert agent_line in shown[-2]
    assert "<script>alert(8)</script>" in shown[-1] and "javascript:alert(9)" in shown[-1]
    assert page.locator("#starcard-chat .log img, #starcard-chat .log script").count() == 0
    assert page.locator("#starcard-chat .log a[href^='javascript']").count() == 0
    assert page.get_by_role("button", name="<img src=y onerror=alert(10)>").count() >= 1
    page.wait_for_timeout(500)
    assert dialogs == []


def test_phone_viewport(browser: Any, stack: Stack) -> None:
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"http://127.0.0.1:{stack.settings.web_port}/")
    page.wait_for_function("() => document.querySelector('#starcard-chat').shadowRoot.querySelector('.bot')")
    # a Chinese browser gets the Chinese UI and greeting
    assert bot_texts(page)[0] == texts("utter_greet")["zh"]
    assert page.locator("#starcard-chat textarea").get_attribute("placeholder") == "请输入您的问题…"
    box = page.locator("#starcard-chat .panel").bounding_box()
    assert (
        box is not None and box["width"] == pytest.approx(390, abs=1) and box["x"] == pytest.approx(0, abs=1)
    )
    send(page, "怎么充值原神")
    assert re.search(r"[\u4e00-\u9fff]", bot_texts(page)[-1])
    page.screenshot(path=str(ARTIFACTS / "widget-phone.png"))
    context.close()


def test_lines_said_while_the_socket_was_down_are_shown_after_it_reconnects(
    browser: Any, stack: Stack
) -> None:
    """A dropped socket (a replica restarted, the network blinked) loses nothing on screen.

    Playwright routes the widget's websocket: the first one is passed through and then
    closed from the page's side; the reconnect is held back until an agent line has been
    posted through Rasa's tracker events API, so that line was emitted to no socket at all.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from handoff.rasa_api import RasaApi

    sockets: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        if len(sockets) == 1:
            ws.connect_to_server()  # the first socket is passed through

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.route_web_socket(re.compile(r".*/socket\.io/.*"), route)
        page.goto(f"http://127.0.0.1:{stack.settings.web_port}/")
        page.wait_for_function(f"() => {ROOT}.querySelector('.bot')")
        send(page, "hello")
        session = page.evaluate("() => window.StarCardChat.sessionId()")
        sockets[0].close()  # the page's socket drops; socket.io's client starts reconnecting
        page.wait_for_function(f"() => {ROOT}.querySelector('.notice')")
        line = "agent: your card code was resent (while you were offline)"

        async def deliver() -> None:
            api = RasaApi(stack.settings.rasa_url, stack.settings.rasa_token)
            try:
                await api.say(session, line, agent="tester")
            finally:
                await api.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, deliver()).result(timeout=30)
        deadline = 60
        while len(sockets) < 2 and deadline:
            page.wait_for_timeout(500)
            deadline -= 1
        assert len(sockets) >= 2, "the widget did not reconnect"
        sockets[-1].connect_to_server()
        page.wait_for_function(
            f"t => [...{ROOT}.querySelectorAll('.bot')].some(b => b.textContent.includes(t))",
            arg=line,
        )
        assert bot_texts(page).count(line) == 1
        # and the chat goes on over the new socket
        send(page, "hello")
        assert bot_texts(page)[-1] == texts("utter_greet")["en"]
    finally:
        context.close()
