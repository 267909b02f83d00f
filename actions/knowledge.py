"""Answering from the knowledge base, in three bands of calibrated confidence.

``action_kb_answer`` runs for every informational intent and for messages the
NLU could not place (nlu_fallback). It searches the customer's language only,
and every informational answer comes from an article (knowledge/articles), so
an edited article changes what the bot says after `make kb`, without retraining:

- a confident FAQ intent (say refund) is answered from the top article when
  that article is in the intent's category and its confidence is at least
  halfway between the suggest and the answer threshold (two independent
  signals agree); otherwise from the best section of the intent's own topic,
  or that topic's main article, never with an article from another topic;
- with no intent (nlu_fallback): confidence >= the answer threshold -> the
  best section, with the article title as its source (and a one-step "Talk to
  a person" button); >= the suggest threshold -> "did you mean" buttons with up
  to three titles; below it -> we have no answer: say so and hand off (reason
  low_confidence).
  A message with no word the knowledge base knows at all is gibberish rather
  than a question: ask to rephrase, and hand off on the second in a row.
- a follow-up right after an answer ("那多久到账？", "how long does that take?")
  is searched together with the question that was answered, and that reading
  wins when it is the more confident one (knowledge/retriever.py: search_in_context).

When the index cannot be used (missing, broken), an FAQ intent is still answered
from its main article's file, anything else gets a person (reason
action_failure), never silence.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from redis.exceptions import RedisError

from actions.conversation import customer_language, response_text
from actions.handoff import ActionHandoff, default_queue
from actions.metrics import kb_outcome
from common.encoders import EMBEDDING_KEY, unpack_vector
from common.language import Language
from common.masking import mask_card_codes
from handoff.analytics import Analytics
from handoff.records import Reason
from knowledge.config import KnowledgeConfig
from knowledge.retriever import Hit, ReloadingRetriever, Retriever, looks_elliptic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topic:
    """What an informational intent may be answered with: article categories, and its main article."""

    categories: frozenset[str]
    article: str


def _topic(article: str, *categories: str) -> Topic:
    return Topic(frozenset(categories), article)


# informational intents -> the articles that can answer them
INTENT_TOPICS: dict[str, Topic] = {
    "recharge_howto": _topic("recharge-game-topup", "recharge"),
    "redeem_gift_card": _topic("card-code-redeem", "card-codes"),
    "card_code_problem": _topic("card-code-invalid", "card-codes", "recharge"),
    "resend_code": _topic("card-code-resend", "card-codes"),
    "delivery_time": _topic("card-code-delivery-delay", "card-codes", "recharge", "orders"),
    "order_status": _topic("order-status", "orders"),
    "cancel_order": _topic("order-cancel", "orders"),
    "refund": _topic("refund-how-to", "refunds"),
    "payment_methods": _topic("payment-methods", "payments"),
    "payment_failed": _topic("payment-failed", "payments", "recharge"),
    "business_hours": _topic("business-hours", "support"),
    "change_contact": _topic("account-change-contact", "account"),
    # signing in, passwords, two-step verification: self-service; a taken-over account is account_security
    "account_help": _topic("account-password-reset", "account"),
    "invoice": _topic("invoice-request", "invoices"),
    "membership": _topic("membership-plans", "membership"),
    "privacy_data": _topic("privacy-data", "privacy"),
}
INTENT_CATEGORIES: dict[str, frozenset[str]] = {name: t.categories for name, t in INTENT_TOPICS.items()}
MAX_SUGGESTIONS = 3
# intents whose short forms are asked about every topic ("要多久", "how long does that take"): in a
# follow-up the earlier question names the topic; any other intent names its own, even when short
ASKED_OF_ANY_TOPIC = frozenset({"delivery_time"})
MAX_QUERY_CHARS = 500

_retriever: ReloadingRetriever | None = None


def default_retriever() -> ReloadingRetriever:
    """The process-wide retriever, created on first use; it re-reads a rebuilt index by itself."""
    global _retriever
    if _retriever is None:
        _retriever = ReloadingRetriever(KnowledgeConfig.from_env())
    return _retriever


def chat_text(markdown: str) -> str:
    """An article section as a chat bubble shows it: no Markdown emphasis, no blank lines.

    Rasa's socket.io channel splits a message at every blank line, which would
    scatter one answer over several bubbles and detach its source line.
    """
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", markdown)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()


def _misses_in_a_row(tracker: Tracker) -> int:
    value = tracker.get_slot("kb_misses")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# article category -> the self-service flow offered under its answers
SELF_SERVICE = {
    "refunds": ("utter_button_request_refund", "/refund_request"),
    "card-codes": ("utter_button_check_card_code", "/card_code_problem"),
}


def nlu_vector(latest: dict[str, Any], retriever: Retriever) -> Any:
    """The message's embedding the NLU already computed (same encoder, whole text), else None."""
    spec = retriever.snapshot.encoder.spec
    if len(str(latest.get("text") or "")) > MAX_QUERY_CHARS:
        return None  # the search reads a shortened text
    return unpack_vector(latest.get(EMBEDDING_KEY), spec.fingerprint, spec.dimensions)


def previous_question(tracker: Tracker) -> str | None:
    """The customer's message that the bot's last knowledge reply (an answer or titles) was for.

    Only directly after it: "那多久到账？" refers to what was just explained or offered,
    not to something from ten turns ago or before a hand-off.
    """
    users = 0
    answered = False
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            users += 1
            if users == 2:
                return str(event.get("text") or "") or None if answered else None
        elif kind == "action" and users == 1:
            name = event.get("name")
            if name == "action_kb_answer":
                answered = True
            elif name not in ("action_listen", None):
                return None
    return None


def article_from_file(config: KnowledgeConfig, article_id: str, language: str) -> Hit | None:
    """An article's introduction straight from knowledge/articles (when the index cannot be read)."""
    from knowledge.articles import load_corpus
    from knowledge.chunking import chunk_article

    for article in load_corpus(config.articles_dir):
        if article.id == article_id and article.language == language:
            return Hit.of(chunk_article(article, config.max_chunk_chars_en, config.max_chunk_chars_zh)[0])
    return None


# words, not only an id, digits or an e-mail: what a question typed into a form looks like
_QUESTION_WORDS = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]")
_FORM_VALUE = re.compile(
    r"[A-Za-z]{2}\d{8,}|[A-Za-z0-9]{4}(?:[-\s*]+[A-Za-z0-9*]{4}){3}|\S+@\S+\.\w+|(?<!\d)\d{4}(?!\d)"
)


def reads_as_question(text: str) -> bool:
    """Whether a message sent to a form is a question of its own rather than the value asked for."""
    return bool(_QUESTION_WORDS.search(text)) and not _FORM_VALUE.search(text)


class ActionAnswerFromKnowledge(Action):
    retriever: ReloadingRetriever | None = None
    handoff: ActionHandoff | None = None
    analytics: Analytics | None = None  # None: the stack's Redis (handoff/analytics.py)

    def name(self) -> str:
        return "action_kb_answer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        events = await self.respond(dispatcher, tracker, domain)
        if tracker.active_loop_name is None and not any(
            e.get("event") in ("followup", "pause") for e in events
        ):
            # the answer (or the notice) ends the bot's turn. Saying so spares Rasa a second run of
            # every policy just to predict action_listen. Inside a form the form must ask again.
            events.append(FollowupAction("action_listen"))
        return events

    async def respond(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        language = customer_language(tracker)
        latest = tracker.latest_message or {}
        intent = str((latest.get("intent") or {}).get("name") or "")
        text = str(latest.get("text") or "")[:MAX_QUERY_CHARS]
        holder = self.retriever or default_retriever()
        try:
            retriever = await asyncio.to_thread(holder.get)
            if intent == "kb_article":
                return self.show_article(dispatcher, tracker, domain, retriever, language)
            previous = previous_question(tracker)
            if previous and previous.startswith("/"):
                # the answer came from a "did you mean" button: its article's title is the question
                shown = retriever.article(str(tracker.get_slot("kb_article") or ""), language)
                previous = shown.title if shown else None
            hits, confidence, in_context = await asyncio.to_thread(
                retriever.search_in_context,
                text,
                previous,
                language,
                MAX_SUGGESTIONS,
                nlu_vector(latest, retriever),
            )
            understood = in_context or await asyncio.to_thread(retriever.understood, text, language)
        except Exception:
            logger.exception("conversation %s: knowledge search failed", tracker.sender_id)
            return await self.unavailable(dispatcher, tracker, domain, intent, language, holder.config)

        answer_at, suggest_at = holder.thresholds(retriever, language)
        top = hits[0] if hits else None
        logger.info(
            "conversation %s: kb %s intent=%s top=%s confidence=%.3f%s (answer %.2f, suggest %.2f) query=%r",
            tracker.sender_id,
            language,
            intent,
            top.article_id if top else None,
            confidence,
            " in context" if in_context else "",
            answer_at,
            suggest_at,
            mask_card_codes(text[:80]),
        )
        topic = INTENT_TOPICS.get(intent)
        if in_context and intent in ASKED_OF_ANY_TOPIC and looks_elliptic(text, language):
            # the NLU reads "那多久到账" alone (a delivery question); what it points back to decides
            topic = None
        if topic and in_context and top and top.category not in topic.categories:
            # the NLU names a topic the earlier question does not share: a new question, read alone
            hits = await asyncio.to_thread(retriever.search, text, language, MAX_SUGGESTIONS)
            confidence = retriever.confidence(hits, language)
            top, in_context = (hits[0] if hits else None), False
        # a calibrated answer on its own beats the intent's topic ("delete my account" read as privacy)
        if topic and not (top and confidence >= answer_at):
            # the NLU and the article agree on the topic: a lower bar than answering alone
            agree_at = (answer_at + suggest_at) / 2
            chosen = top if top and top.category in topic.categories and confidence >= agree_at else None
            if chosen is None:
                # the articles disagree with the NLU or are unsure: the best section of the intent's
                # own topic when the search found one, else the topic's main article
                in_topic = [h for h in hits if h.category in topic.categories]
                chosen = in_topic[0] if in_topic else retriever.article(topic.article, language)
            if chosen is not None:
                kb_outcome("answer" if chosen is top else "topic", language)
                self.answer(dispatcher, domain, chosen, language)
                return [SlotSet("kb_article", chosen.article_id), SlotSet("kb_misses", 0)]
            if hits:
                # the knowledge base has no article on the NLU's topic: titles to pick from, never
                # another topic's article as if it were the answer
                kb_outcome("suggest", language)
                self.suggest(dispatcher, domain, hits, language)
                return [SlotSet("kb_misses", 0)]
        if top and confidence >= answer_at:
            kb_outcome("answer", language)
            self.answer(dispatcher, domain, top, language)
            return [SlotSet("kb_article", top.article_id), SlotSet("kb_misses", 0)]
        if top and confidence >= suggest_at:
            kb_outcome("suggest", language)
            self.suggest(dispatcher, domain, hits, language)
            return [SlotSet("kb_misses", 0)]
        if not understood and _misses_in_a_row(tracker) == 0:
            buttons = [
                {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
            ]
            kb_outcome("rephrase", language)
            await self.unanswered(tracker, text, language, "rephrase")
            dispatcher.utter_message(response="utter_kb_rephrase", buttons=buttons)
            return [SlotSet("kb_misses", 1)]
        # a customer we already asked to rephrase has now failed twice, whatever the NLU made of it
        second = not understood or _misses_in_a_row(tracker) > 0
        reason = Reason.SECOND_FALLBACK if second else Reason.LOW_CONFIDENCE
        kb_outcome("handoff", language)
        await self.unanswered(tracker, text, language, "handoff")
        dispatcher.utter_message(response="utter_kb_no_answer")
        events = await (self.handoff or self._handoff()).hand_off(dispatcher, tracker, reason)
        return [*events, SlotSet("kb_misses", 0)]

    def _handoff(self) -> ActionHandoff:
        return ActionHandoff()

    async def answer_aside(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """A question asked in the middle of a form: answered only when the knowledge base is sure.

        Nothing else happens (no suggestions, no handoff, no rephrase request): the form goes on and
        asks its question again, so a customer who asks "where do I see my refund?" while the refund
        form wants an order id gets the answer instead of "that is not an order id".
        """
        language = customer_language(tracker)
        latest = tracker.latest_message or {}
        text = str(latest.get("text") or "")[:MAX_QUERY_CHARS]
        if not reads_as_question(text):
            return []
        holder = self.retriever or default_retriever()
        try:
            retriever = await asyncio.to_thread(holder.get)
            hits = await asyncio.to_thread(
                retriever.search, text, language, MAX_SUGGESTIONS, nlu_vector(latest, retriever)
            )
            confidence = retriever.confidence(hits, language)
        except Exception:
            logger.exception("conversation %s: knowledge search inside a form failed", tracker.sender_id)
            return []
        answer_at, _ = holder.thresholds(retriever, language)
        if not hits or confidence < answer_at:
            return []
        logger.info(
            "conversation %s: kb %s answered inside %s: %s (confidence %.3f)",
            tracker.sender_id,
            language,
            tracker.active_loop_name,
            hits[0].article_id,
            confidence,
        )
        kb_outcome("aside", language)
        self.answer(dispatcher, domain, hits[0], language)
        return [SlotSet("kb_article", hits[0].article_id)]

    async def unanswered(self, tracker: Tracker, text: str, language: str, outcome: str) -> None:
        """Note the question for the supervisor's "top unanswered" (handoff/analytics.py)."""
        try:
            if self.analytics is None:
                self.analytics = default_queue().analytics
            await self.analytics.unanswered(text, language, outcome)
        except RedisError as error:  # analytics must never cost the customer their answer
            logger.warning("conversation %s: unanswered question not recorded: %s", tracker.sender_id, error)

    def answer(
        self, dispatcher: CollectingDispatcher, domain: dict[str, Any], hit: Hit, language: Language
    ) -> None:
        source = response_text(domain, "utter_kb_source", language).format(title=hit.title)
        buttons = [
            {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
        ]
        if hit.category in SELF_SERVICE:
            # after reading how it works, the customer can do it here
            response, payload = SELF_SERVICE[hit.category]
            buttons.insert(0, {"title": response_text(domain, response, language), "payload": payload})
        # the article id is in the kb_article slot; a custom payload would reach channels as an extra message
        dispatcher.utter_message(text=f"{chat_text(hit.chunk)}\n{source}", buttons=buttons)

    def suggest(
        self, dispatcher: CollectingDispatcher, domain: dict[str, Any], hits: list[Hit], language: Language
    ) -> None:
        buttons = [
            {"title": hit.title, "payload": f'/kb_article{{"kb_article":"{hit.article_id}"}}'}
            for hit in hits[:MAX_SUGGESTIONS]
        ]
        buttons.append(
            {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
        )
        dispatcher.utter_message(response="utter_kb_suggest", buttons=buttons)

    def show_article(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
        retriever: Retriever,
        language: Language,
    ) -> list[EventType]:
        article_id = str(tracker.get_slot("kb_article") or "")
        for entity in (tracker.latest_message or {}).get("entities") or []:
            if entity.get("entity") == "kb_article":
                article_id = str(entity.get("value") or "")
        hit = retriever.article(article_id, language) if article_id else None
        if hit is None:
            dispatcher.utter_message(response="utter_ask_how_to_help")
            return []
        self.answer(dispatcher, domain, hit, language)
        return [SlotSet("kb_article", hit.article_id), SlotSet("kb_misses", 0)]

    async def unavailable(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
        intent: str,
        language: Language,
        config: KnowledgeConfig,
    ) -> list[EventType]:
        topic = INTENT_TOPICS.get(intent)
        if topic is not None:
            # the index is gone, the articles are not: the topic's main article, read from its file
            try:
                hit = await asyncio.to_thread(article_from_file, config, topic.article, language)
            except Exception:  # a broken article file must not cost the customer a person
                logger.exception("conversation %s: article %s unreadable", tracker.sender_id, topic.article)
                hit = None
            if hit is not None:
                self.answer(dispatcher, domain, hit, language)
                return [SlotSet("kb_article", hit.article_id)]
        dispatcher.utter_message(response="utter_kb_unavailable")
        return await (self.handoff or self._handoff()).hand_off(dispatcher, tracker, Reason.ACTION_FAILURE)
