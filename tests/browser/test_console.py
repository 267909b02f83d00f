"""The agent console in Debian's headless chromium against the real stack: login, claim, reply, close.

Also checks that customer text cannot run script in the console (the page has a strict CSP and
renders everything as text), and keeps screenshots in var/test-results/browser/.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from handoff.auth import Role
from scripts.stack import Stack
from tests.integration.helpers import rest_headers, rest_url, say, texts

pytestmark = pytest.mark.browser

ARTIFACTS = Path("var/test-results/browser")
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
PASSWORD = "console test password"


def add_agent(stack: Stack, name: str, role: Role) -> None:
    """Through the CLI an operator would use (the password comes from the environment)."""
    result = subprocess.run(
        [
            ".venv/bin/python",
            "-m",
            "handoff",
            "agents",
            "add",
            name,
            "--role",
            role.value,
            "--password-env",
            "PW",
        ],
        env={**stack.env(), "PW": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def open_and_claim(page: Any, conversation_id: str) -> None:
    """Pick the conversation in the queue and claim it, as an agent does."""
    item = page.locator(f'.conv[data-id="{conversation_id}"]')
    item.wait_for(state="visible")
    item.click()
    page.locator("#claim").click()
    page.locator("#reply").wait_for(state="visible")


@pytest.fixture
def console(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.goto(f"http://127.0.0.1:{stack.settings.web_port}/console")
    yield page
    context.close()


def log_in(page: Any, name: str) -> None:
    page.locator("#login-name").fill(name)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-submit").click()
    page.locator("#main-view").wait_for(state="visible")


def pending(stack: Stack, sender: str) -> list[str]:
    reply = httpx.get(
        f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/rest/messages",
        params={"sender": sender},
        headers=rest_headers(stack),
    )
    return [m.get("text", "") for m in reply.json()]


def delivered(console: Any, stack: Stack, customer: str, text: str) -> bool:
    """Whether the agent's line reaches the REST customer within 10 s."""
    seen: list[str] = []
    for _ in range(50):
        seen += pending(stack, customer)
        if text in seen:
            return True
        console.wait_for_timeout(200)
    return False


def test_login_claim_reply_close_and_customer_text_stays_text(console: Any, stack: Stack) -> None:
    name = "dana-" + secrets.token_hex(3)
    add_agent(stack, name, Role.SUPERVISOR)
    customer = "console-" + uuid.uuid4().hex[:8]
    say(stack, customer, "my steam code K7QM-2XPA-9FTR-4WZD is not working")
    say(stack, customer, XSS)
    say(stack, customer, "I want to talk to a human")

    # a wrong password is refused with a message
    console.locator("#login-name").fill(name)
    console.locator("#login-password").fill("wrong password")
    console.locator("#login-submit").click()
    console.locator("#login-error").wait_for(state="visible")
    log_in(console, name)

    open_and_claim(console, customer)

    transcript = console.locator("#transcript")
    transcript.get_by_text(XSS, exact=True).wait_for()
    assert console.locator("#transcript img").count() == 0, "customer markup must not become elements"
    assert "K7QM-****-****-4WZD" in transcript.inner_text() and "2XPA" not in transcript.inner_text()
    console.locator(".kb-hit").first.wait_for(state="attached")

    console.locator("#reply").fill("Hi, this is the support team. Let me check that code.")
    console.locator("#send").click()
    transcript.get_by_text("Hi, this is the support team. Let me check that code.").wait_for()
    # an agent's own markup (pasted from somewhere) stays text too
    agent_markup = "<img src=x onerror=alert(4)> pasted"
    console.locator("#reply").fill(agent_markup)
    console.locator("#send").click()
    transcript.get_by_text(agent_markup, exact=True).wait_for()
    assert console.locator("#transcript img").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(ARTIFACTS / "console.png"))

    assert delivered(console, stack, customer, "Hi, this is the support team. Let me check that code.")

    console.locator("#resolution").select_option("resolved")
    console.locator("#close").click()
    console.locator("#conv-state", has_text="closed").wait_for()

    console.locator("#tab-supervisor").click()
    console.locator("#stat-closed-today").wait_for(state="visible")
    console.locator("#chart-csat .bar-row").first.wait_for(state="attached")
    console.screenshot(path=str(ARTIFACTS / "console-supervisor.png"))
    assert console.dialogs == [], "no script from customer text may run"


def test_an_agent_sees_no_supervisor_tab(console: Any, stack: Stack) -> None:
    name = "eve-" + secrets.token_hex(3)
    add_agent(stack, name, Role.AGENT)
    log_in(console, name)
    assert not console.locator("#tab-supervisor").is_visible()
    reply = httpx.post(
        rest_url(stack), json={"sender": "console-x", "message": "hello"}, headers=rest_headers(stack)
    )
    assert reply.status_code == 200


def test_knowledge_suggestions_with_markup_stay_text(console: Any, stack: Stack) -> None:
    """An article can quote markup; the suggestions panel shows it as text.

    The search answer is replaced in the browser (Playwright's route) by one whose hit carries markup in its
    title and text, so the rendering path is tested without adding such an article to the shipped corpus.
    """
    import json

    name = "kim-" + secrets.token_hex(3)
    add_agent(stack, name, Role.AGENT)
    customer = "console-kb-" + uuid.uuid4().hex[:8]
    say(stack, customer, "I want to talk to a human")
    hit = {
        "article_id": "x1",
        "title": "<img src=x onerror=alert(11)>Refunds",
        "language": "en",
        "heading": "h",
        "chunk": "<script>alert(12)</script>Refunds take 3-5 days.",
        "score": 0.9,
        "source": "x",
        "chunk_id": "x1#0",
        "category": "refund",
    }
    console.route(
        "**/api/kb/search?*",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"hits": [hit], "band": "answer"})
        ),
    )
    log_in(console, name)
    open_and_claim(console, customer)
    panel = console.locator("#kb .kb-hit")
    panel.first.wait_for(state="attached")
    shown = panel.first.text_content() or ""
    assert hit["title"] in shown and "<script>alert(12)</script>" in shown
    assert console.locator("#kb img, #kb script").count() == 0
    console.wait_for_timeout(300)
    assert console.dialogs == []


def test_restarting_the_handoff_service_mid_chat_loses_nothing_and_the_console_reconnects(
    console: Any, stack: Stack
) -> None:
    name = "ravi-" + secrets.token_hex(3)
    add_agent(stack, name, Role.AGENT)
    customer = "console-restart-" + uuid.uuid4().hex[:8]
    say(stack, customer, "I want to talk to a human")
    log_in(console, name)
    open_and_claim(console, customer)
    transcript = console.locator("#transcript")
    console.locator("#reply").fill("Hello, I am looking at your order now.")
    console.locator("#send").click()
    transcript.get_by_text("Hello, I am looking at your order now.").wait_for()

    stack.stop_service("web")
    try:
        # the customer writes while the service is down: Rasa keeps it in the event stream (the REST
        # answer carries only lines queued for this customer earlier, no bot reply: the agent holds it)
        say(stack, customer, "are you still there?")
        console.locator("#conn-status").wait_for(state="visible")  # the console says it lost the line
    finally:
        stack.restart_service("web")
    # no reload: the console reconnects by itself, and the line written meanwhile arrives
    console.locator("#conn-status").wait_for(state="hidden", timeout=60_000)
    transcript.get_by_text("are you still there?").wait_for(timeout=60_000)
    assert transcript.get_by_text("Hello, I am looking at your order now.").count() == 1
    console.locator("#reply").fill("Yes, still here. Your code has been resent.")
    console.locator("#send").click()
    assert delivered(console, stack, customer, "Yes, still here. Your code has been resent.")
    assert console.dialogs == []


def test_the_widget_shows_who_answers_while_an_agent_holds_the_chat(
    console: Any, browser: Any, stack: Stack
) -> None:
    """The customer sees the agent's name on their lines and in the header, and no "typing" from the bot."""
    from tests.browser.test_widget import ROOT, bot_texts, send

    name = "widget-agent-" + secrets.token_hex(3)
    add_agent(stack, name, Role.AGENT)
    log_in(console, name)
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    try:
        widget = context.new_page()
        widget.set_default_timeout(30_000)
        widget.goto(f"http://127.0.0.1:{stack.settings.web_port}/")
        widget.wait_for_function(f"() => {ROOT}.querySelector('.bot')")
        subtitle = widget.locator("#starcard-chat [data-testid=subtitle]")
        assert "AI assistant" in subtitle.inner_text()
        send(widget, "I want to talk to a person")
        session = widget.evaluate("() => window.StarCardChat.sessionId()")
        open_and_claim(console, session)
        line = "Hi, this is " + name + ". Let me look at your order."
        console.locator("#reply").fill(line)
        console.locator("#send").click()
        widget.wait_for_function(
            f"t => [...{ROOT}.querySelectorAll('.bot.agent')].some(b => b.textContent === t)", arg=line
        )
        assert widget.locator("#starcard-chat .who").last.inner_text() == f"Support agent · {name}"
        assert name in subtitle.inner_text()
        # the customer writes during the hold: the bot stays silent, so it must not look like typing
        widget.locator("#starcard-chat textarea").fill("thanks, it is order DG202611230017")
        widget.locator("#starcard-chat textarea").press("Enter")
        console.locator("#transcript").get_by_text("thanks, it is order DG202611230017").wait_for()
        assert widget.locator("#starcard-chat .typing.on").count() == 0
        widget.screenshot(path=str(ARTIFACTS / "widget-agent.png"))
        # a reload keeps the agent's label and the header (from the history)
        widget.reload()
        widget.wait_for_function(f"() => {ROOT}.querySelector('.bot.agent')")
        assert name in subtitle.inner_text()
        # handed back: the header is the assistant's again and the bot answers
        console.locator("#handback").click()
        widget.wait_for_function(
            f"() => {ROOT}.querySelector('[data-testid=subtitle]').textContent.includes('AI assistant')"
        )
        send(widget, "hello")
        assert bot_texts(widget)[-1] == texts("utter_greet")["en"]
    finally:
        context.close()
