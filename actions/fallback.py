"""The first stage of the two-stage fallback, in the customer's language.

Rasa's built-in ``action_default_ask_affirmation`` asks "Did you mean 'x'?" in
English with the raw intent name. This override offers the two likeliest
topics as buttons labelled in the customer's language, plus "Talk to a person"
(one step to a human, always) and "None of these" (``/out_of_scope``, which the
fallback loop treats as "let me rephrase").
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import customer_language, response_text
from common.language import Language

# button labels for suggested topics; intents not listed are never suggested
INTENT_LABELS: dict[str, dict[Language, str]] = {
    "order_status": {"zh": "查询订单状态", "en": "Check an order"},
    "card_code_problem": {"zh": "卡密无法使用", "en": "A card code doesn't work"},
    "resend_code": {"zh": "没收到卡密", "en": "I didn't get my card code"},
    "refund": {"zh": "退款", "en": "Refunds"},
    "cancel_order": {"zh": "取消订单", "en": "Cancel an order"},
    "recharge_howto": {"zh": "游戏充值方法", "en": "How to top up a game"},
    "redeem_gift_card": {"zh": "如何兑换礼品卡", "en": "How to redeem a gift card"},
    "payment_methods": {"zh": "支付方式", "en": "Payment methods"},
    "payment_failed": {"zh": "支付失败", "en": "A payment failed"},
    "delivery_time": {"zh": "发货/到账时间", "en": "Delivery times"},
    "account_security": {"zh": "账号安全", "en": "Account security"},
    "payment_dispute": {"zh": "扣款异常/重复扣款", "en": "A wrong or double charge"},
    "complaint": {"zh": "投诉", "en": "Make a complaint"},
    "business_hours": {"zh": "人工客服时间", "en": "Support hours"},
    "change_contact": {"zh": "修改手机号/邮箱", "en": "Change phone or e-mail"},
    "invoice": {"zh": "开发票", "en": "Invoices"},
    "membership": {"zh": "StarCard Plus 会员", "en": "StarCard Plus membership"},
    "privacy_data": {"zh": "隐私与个人数据", "en": "Privacy and my data"},
}
MAX_SUGGESTIONS = 2


def suggestions(tracker: Tracker) -> list[str]:
    """The likeliest intents worth offering, best first."""
    ranking = (tracker.latest_message or {}).get("intent_ranking") or []
    names = [str(item.get("name")) for item in ranking if item.get("name") in INTENT_LABELS]
    return names[:MAX_SUGGESTIONS]


class ActionDefaultAskAffirmation(Action):
    def name(self) -> str:
        return "action_default_ask_affirmation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        language = customer_language(tracker)
        buttons = [
            {"title": INTENT_LABELS[intent][language], "payload": f"/{intent}"}
            for intent in suggestions(tracker)
        ]
        buttons.append(
            {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
        )
        buttons.append(
            {"title": response_text(domain, "utter_none_of_these", language), "payload": "/out_of_scope"}
        )
        dispatcher.utter_message(response="utter_ask_affirmation_intro", buttons=buttons)
        return []
