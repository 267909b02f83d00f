"""A WeChat customer in the agent console (Debian's headless chromium, the real stack).

The agent sees the channel, the photo the customer sent and, when WeChat refuses a reply
(the 48-hour window), a line saying so; customer markup stays text. Keeps a screenshot in
var/test-results/browser/console-wechat.png.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from handoff.auth import Role
from scripts.stack import Stack
from tests.browser.test_console import ARTIFACTS, XSS, add_agent, console, log_in  # noqa: F401 - fixture
from tests.integration.test_channels import new_openid, text_xml, wechat_post

pytestmark = pytest.mark.browser


def test_a_wechat_conversation_in_the_console(console: Any, stack: Stack, platforms: dict[str, Any]) -> None:  # noqa: F811
    wechat = platforms["wechat"]
    openid = new_openid()
    conversation = "wx:" + openid
    name = "wx-console-" + secrets.token_hex(3)
    add_agent(stack, name, Role.AGENT)
    log_in(console, name)

    photo = (
        f"<xml><ToUserName>gh_starcard</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType>"
        f"<PicUrl>http://mmbiz.qpic.example/receipt.jpg</PicUrl><MediaId>m1</MediaId>"
        f"<MsgId>{time.time_ns()}</MsgId></xml>"
    )
    for body in (
        text_xml(openid, "我的卡密 K7QM-2XPA-9HRT-4WZD 显示已使用"),
        photo,
        text_xml(openid, "转人工"),
    ):
        assert wechat_post(stack, body).status_code == 200

    item = console.locator(f'.conv[data-id="{conversation}"]')
    item.wait_for(state="visible")
    item.click()
    console.locator("#claim").click()
    console.locator("#reply").wait_for(state="visible")
    transcript = console.locator("#transcript")
    transcript.get_by_text("[image] http://mmbiz.qpic.example/receipt.jpg").wait_for()
    assert "wechat" in console.locator("#conversation").inner_text().lower()

    assert wechat_post(stack, text_xml(openid, XSS)).status_code == 200
    transcript.get_by_text(XSS, exact=True).wait_for()
    assert console.locator("#transcript img").count() == 0

    # the claim's "agent joined" goes out first (the console shows the reply box before it has)
    wechat.wait_for(lambda calls: [c for c in calls if c.get("touser") == openid and name in c["content"]])
    wechat.expired_users.add(openid)
    try:
        console.locator("#reply").fill("您好，我来帮您查一下这张卡。")
        console.locator("#send").click()
        transcript.get_by_text("Not delivered on wechat", exact=False).first.wait_for()
    finally:
        wechat.expired_users.discard(openid)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(ARTIFACTS / "console-wechat.png"))
    refused = transcript.get_by_text("Not delivered on wechat", exact=False)
    assert refused.count() == 1, transcript.inner_text()
    assert "您好，我来帮您查一下这张卡。" in refused.first.inner_text()
    assert console.dialogs == []
