"""bot.channels.wechat without a network: parsing, rendering, signatures, AES test vectors."""

from __future__ import annotations

import hashlib

import pytest

from bot.channels.wechat import (
    MalformedMessage,
    WeChatInput,
    openid_of,
    parse_inbound,
    render_message,
    sender_id_for,
)
from tests import fake_platforms as vector


def text_xml(content: str = "你好", msg_id: str = "1234567890123456", openid: str = "oUser_1") -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def test_text_message_is_read() -> None:
    inbound = parse_inbound(text_xml())
    assert (inbound.openid, inbound.account, inbound.kind, inbound.content) == (
        "oUser_1",
        "gh_account",
        "text",
        "你好",
    )
    assert inbound.dedupe_token == "msg:1234567890123456"


def test_events_are_deduplicated_by_sender_and_time() -> None:
    xml = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>oUser_1</FromUserName><CreateTime>1700000001</CreateTime>"
        "<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    inbound = parse_inbound(xml)
    assert (inbound.kind, inbound.event, inbound.dedupe_token) == (
        "event",
        "subscribe",
        "evt:oUser_1:1700000001:subscribe",
    )


def test_an_image_keeps_its_url_for_the_agent() -> None:
    xml = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>oUser_1</FromUserName><CreateTime>1700000001</CreateTime>"
        "<MsgType>image</MsgType><PicUrl>http://mmbiz.example/p.jpg</PicUrl><MediaId>m1</MediaId><MsgId>7</MsgId></xml>"
    )
    inbound = parse_inbound(xml)
    assert inbound.kind == "image" and inbound.details["url"] == "http://mmbiz.example/p.jpg"


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml",
        "<xml><unclosed></xml>",
        "<root><MsgType>text</MsgType></root>",
        "<xml><FromUserName>oUser</FromUserName></xml>",
        text_xml(openid="bad id with spaces"),
        text_xml(msg_id="<a>1</a>").replace("&lt;", "<").replace("&gt;", ">"),
        text_xml(msg_id=""),
        "<xml><ToUserName>gh</ToUserName><FromUserName>oU</FromUserName><CreateTime>x</CreateTime>"
        "<MsgType>text</MsgType><MsgId>1</MsgId></xml>",
        "<xml><ToUserName>gh</ToUserName><FromUserName>oU</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType><a>b</a></MsgType><MsgId>1</MsgId></xml>",
    ],
)
def test_malformed_pushes_are_rejected(xml: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_inbound(xml)


def test_entities_are_not_expanded() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><ToUserName>gh</ToUserName><FromUserName>oU</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content>&b;</Content><MsgId>1</MsgId></xml>"
    )
    try:
        inbound = parse_inbound(bomb)
    except MalformedMessage:
        return
    assert "aaaaaaaaaa" not in inbound.content


def test_buttons_become_numbered_choices_with_a_hint() -> None:
    parts, payloads = render_message(
        {"text": "请为本次服务打分", "buttons": [{"title": "5 很满意", "payload": '/rate{"rating":"5"}'}]}
    )
    assert parts == ["请为本次服务打分\n1. 5 很满意\n（回复数字即可选择）"]
    assert payloads == ['/rate{"rating":"5"}']


def test_long_replies_are_split_under_the_byte_limit() -> None:
    parts, _ = render_message({"text": "很长的回答。" * 400})
    assert len(parts) >= 2 and all(len(p.encode()) <= 2000 for p in parts)


def test_sender_ids_are_namespaced() -> None:
    assert sender_id_for("oAbc") == "wx:oAbc" and openid_of("wx:oAbc") == "oAbc"


def test_plain_signature_matches_wechats_algorithm() -> None:
    # wechatpy's vector (tests/test_utils.py): token "test"
    signature = hashlib.sha1("".join(sorted(["test", "1410685589", "test"])).encode()).hexdigest()
    assert signature == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"


def test_aes_vector_decrypts_and_a_reply_round_trips() -> None:
    channel = WeChatInput(
        token=vector.WECHAT_AES_TOKEN, app_id=vector.WECHAT_AES_APP_ID, encoding_aes_key=vector.WECHAT_AES_KEY
    )
    crypto = channel.crypto()
    plain = crypto.decrypt_message(
        vector.WECHAT_AES_BODY,
        vector.WECHAT_AES_SIGNATURE,
        vector.WECHAT_AES_TIMESTAMP,
        vector.WECHAT_AES_NONCE,
    )
    inbound = parse_inbound(plain)
    assert (inbound.openid, inbound.content, inbound.dedupe_token) == (
        "messense",
        "test",
        "msg:4363689963896700987",
    )
    sealed = crypto.encrypt_message("<xml><Content><![CDATA[回复]]></Content></xml>", "nonce1", "1411525903")
    import xmltodict

    envelope = xmltodict.parse(sealed)["xml"]
    opened = crypto.decrypt_message(
        sealed, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
    )
    assert "回复" in opened


def test_a_tampered_aes_message_fails_its_signature() -> None:
    from wechatpy.exceptions import InvalidSignatureException

    crypto = WeChatInput(
        token=vector.WECHAT_AES_TOKEN, app_id=vector.WECHAT_AES_APP_ID, encoding_aes_key=vector.WECHAT_AES_KEY
    ).crypto()
    with pytest.raises(InvalidSignatureException):
        crypto.decrypt_message(
            vector.WECHAT_AES_BODY.replace("Rgq", "Xgq"),
            vector.WECHAT_AES_SIGNATURE,
            vector.WECHAT_AES_TIMESTAMP,
            vector.WECHAT_AES_NONCE,
        )


def test_from_credentials_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_TOKEN", "tok")
    monkeypatch.setenv("WECHAT_REPLY_DEADLINE", "3")
    channel = WeChatInput.from_credentials({"token": "", "app_id": None})
    assert isinstance(channel, WeChatInput) and channel.token == "tok" and channel.reply_deadline == 3.0
    assert channel.api is None  # no app id/secret: no customer-service API


def test_rating_choices_are_numbered_by_their_rating() -> None:
    buttons = [{"title": "⭐" * n, "payload": f'/rate{{"rating":"{n}"}}'} for n in range(5, 0, -1)]
    parts, payloads = render_message({"text": "请打分", "buttons": buttons})
    assert payloads == [f'/rate{{"rating":"{n}"}}' for n in range(1, 6)]
    assert "\n5. ⭐⭐⭐⭐⭐\n" in parts[0]
