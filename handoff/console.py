"""The agent API (REST + websocket) and the console page; the console uses nothing else.

Every route needs a session (cookie ``cs_session``); state-changing routes
also need the session's CSRF token in ``X-CSRF-Token``. Supervisors see the
supervisor statistics; agents do not.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator

from common.masking import mask_card_codes
from common.redaction import redact
from handoff.analytics import draft_article, group_by_meaning
from handoff.auth import AgentDirectory, LockedOut, Role, Session
from handoff.queue import ClaimError, HandoffQueue, NotHolder, Resolution, State
from handoff.rasa_api import CustomerTexts, RasaApi, RasaUnavailable
from handoff.tickets import TicketBook, TicketClosed, TicketNotFound
from knowledge.articles import ArticleError, parse_article

logger = logging.getLogger(__name__)

COOKIE = "cs_session"
UNANSWERED_GROUPED = 300  # the latest questions grouped by meaning
GROUPS_TTL_SECONDS = 60.0
DRAFT_NAME = re.compile(r"draft-[0-9]{14}-[a-z0-9-]{1,48}\.md")
STATIC_DIR = Path(__file__).parent / "static"


def console_csp(host: str) -> str:
    """The console's policy: its websocket goes to this host only (not ``ws:`` anywhere)."""
    host = host if host and all(c.isalnum() or c in ".:-[]" for c in host) else "localhost"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


CANNED = {
    "zh": [
        {"title": "问候", "text": "您好，我是客服，已经看到您和小卡的对话了，马上为您处理。"},
        {"title": "请稍等", "text": "请稍等，我正在为您核实。"},
        {"title": "需要订单号", "text": "麻烦提供一下订单号（DG 开头加 12 位数字），我帮您查询。"},
        {"title": "已补发", "text": "已为您重新发送，请查看注册邮箱（包括垃圾邮件）。"},
        {"title": "结束", "text": "还有其他可以帮您的吗？没有的话我先结束本次服务，祝您生活愉快！"},
    ],
    "en": [
        {
            "title": "Hello",
            "text": "Hi, I'm from the support team. I've read your chat with the assistant and I'm on it.",
        },
        {"title": "One moment", "text": "One moment please, I'm checking this for you."},
        {"title": "Need order id", "text": "Could you send me the order ID (DG followed by 12 digits)?"},
        {
            "title": "Resent",
            "text": "I've resent it; please check your registered e-mail, including the spam folder.",
        },
        {
            "title": "Wrap up",
            "text": "Is there anything else I can help with? If not, I'll close this chat. Have a great day!",
        },
    ],
}


def valid_unicode(value: str) -> str:
    """JSON can carry lone surrogates ("\\ud800"); no UTF-8 store or hash takes them: a 422, not a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)

    _unicode = field_validator("name", "password")(valid_unicode)


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=4000)

    _unicode = field_validator("text")(valid_unicode)


class Transfer(BaseModel):
    agent: str = Field(min_length=1, max_length=64)


class Close(BaseModel):
    resolution: Resolution = Resolution.RESOLVED


class Draft(BaseModel):
    question: str = Field(min_length=1, max_length=400)
    language: str = Field(pattern="^(zh|en)$")
    examples: list[str] = Field(default_factory=list, max_length=20)


class DraftText(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)

    _unicode = field_validator("text")(valid_unicode)


@dataclass
class Services:
    queue: HandoffQueue
    agents: AgentDirectory
    tickets: TicketBook
    rasa: RasaApi
    texts: CustomerTexts
    # the knowledge base (for grouping unanswered questions by meaning) and where drafts go
    knowledge: Callable[[], Any] | None = None
    drafts_dir: Path = Path("var/kb-drafts")


def masked_summary(conversation: Any) -> dict[str, Any]:
    """What agents see of a conversation: phone numbers, e-mails, bank cards and ID numbers masked.

    Nothing an agent does in the console needs them whole (a ticket's contact, which the reply goes
    to, is shown as the customer left it); card codes are masked before Rasa sees them anyway.
    """
    summary: dict[str, Any] = conversation.summary_json()
    summary["summary"] = redact(str(summary.get("summary") or ""))
    return summary


def may_see(current: Session, state: State | None, holder: str | None) -> bool:
    """Agents see the waiting line and their own conversations; supervisors see every one."""
    return current.role is Role.SUPERVISOR or state is State.WAITING or holder == current.agent


def masked_line(line: dict[str, Any]) -> dict[str, Any]:
    return {**line, "text": redact(str(line.get("text") or ""))} if line else line


def create_router(services: Callable[[], Services]) -> APIRouter:
    router = APIRouter(tags=["agents"])

    async def session(request: Request) -> Session:
        found = await services().agents.session(request.cookies.get(COOKIE))
        if found is None:
            raise HTTPException(status_code=401, detail="log in first")
        if request.method not in ("GET", "HEAD") and request.headers.get("x-csrf-token") != found.csrf:
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
        await services().queue.heartbeat(found.agent)
        return found

    async def supervisor(current: Session = Depends(session)) -> Session:
        if current.role is not Role.SUPERVISOR:
            raise HTTPException(status_code=403, detail="supervisors only")
        return current

    async def conversation_or_404(conversation_id: str) -> Any:
        found = await services().queue.get(conversation_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such conversation in the queue")
        return found

    @router.get("/console", response_class=HTMLResponse, include_in_schema=False)
    async def console_page(request: Request) -> HTMLResponse:
        html = (STATIC_DIR / "console.html").read_text(encoding="utf-8")
        csp = console_csp(request.headers.get("host", ""))
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    @router.post("/api/agent/login")
    async def login(body: Login, response: Response, request: Request) -> dict[str, str]:
        try:
            client = request.client.host if request.client else "unknown"
            found = await services().agents.login(body.name, body.password, client)
        except LockedOut as error:
            raise HTTPException(status_code=429, detail="too many failed logins; try again later") from error
        if found is None:
            raise HTTPException(status_code=401, detail="wrong name or password")
        response.set_cookie(
            COOKIE,
            found.token,
            max_age=services().agents.session_ttl_seconds,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        await services().queue.heartbeat(found.agent)
        return {"name": found.agent, "role": found.role.value, "csrf": found.csrf}

    @router.post("/api/agent/logout")
    async def logout(response: Response, current: Session = Depends(session)) -> dict[str, bool]:
        await services().agents.logout(current.token)
        await services().queue.offline(current.agent)
        response.delete_cookie(COOKIE)
        return {"ok": True}

    @router.get("/api/agent/me")
    async def me(current: Session = Depends(session)) -> dict[str, str]:
        return {"name": current.agent, "role": current.role.value, "csrf": current.csrf}

    @router.get("/api/queue")
    async def queue_view(current: Session = Depends(session)) -> dict[str, Any]:
        queue = services().queue
        online = set(await queue.online_agents())
        active = await queue.active()
        holding: dict[str, int] = {}
        for conversation in active:
            holding[conversation.agent or ""] = holding.get(conversation.agent or "", 0) + 1
        agents = [
            {
                "name": a.name,
                "role": a.role.value,
                "online": a.name in online,
                "active": holding.get(a.name, 0),
            }
            for a in sorted(await services().agents.all(), key=lambda a: a.name)
        ]
        from datetime import datetime, timezone

        visible = [c for c in active if may_see(current, c.state, c.agent)]
        return {
            "now": datetime.now(timezone.utc).isoformat(),
            "waiting": [masked_summary(c) for c in await queue.waiting()],
            "active": [masked_summary(c) for c in visible],
            "agents": agents,
        }

    @router.get("/api/conversations/{conversation_id}")
    async def conversation(conversation_id: str, current: Session = Depends(session)) -> dict[str, Any]:
        found = await conversation_or_404(conversation_id)
        if not may_see(current, found.state, found.agent):
            raise HTTPException(status_code=403, detail="another agent's conversation")
        transcript = [
            {"speaker": line.speaker, "text": line.text, "time": line.time}
            for line in found.record.transcript
        ]
        transcript += await services().queue.lines(conversation_id)
        return {**masked_summary(found), "transcript": [masked_line(line) for line in transcript]}

    @router.post("/api/conversations/{conversation_id}/claim")
    async def claim(conversation_id: str, current: Session = Depends(session)) -> dict[str, Any]:
        await conversation_or_404(conversation_id)
        try:
            claimed = await services().queue.claim(conversation_id, current.agent)
        except ClaimError as error:
            raise HTTPException(status_code=409, detail=str(error)) from error
        try:
            await services().rasa.pause(conversation_id)
            text = services().texts.get("utter_agent_joined", claimed.record.language, agent=current.agent)
            await services().rasa.say(conversation_id, text, agent=current.agent)
        except RasaUnavailable as error:
            logger.error("conversation %s: claimed, but Rasa is unreachable: %s", conversation_id, error)
        return masked_summary(claimed)

    async def holder_or_403(conversation_id: str, current: Session) -> Any:
        found = await conversation_or_404(conversation_id)
        if found.state is not State.ACTIVE or found.agent != current.agent:
            raise HTTPException(status_code=403, detail="claim the conversation first")
        return found

    async def held_or_403(conversation_id: str, current: Session) -> None:
        """holder_or_403 for the chat's hot path: the state and holder only, not the transcript."""
        state, agent, _ = await services().queue.brief(conversation_id)
        if state is None:
            raise HTTPException(status_code=404, detail="no such conversation in the queue")
        if state is not State.ACTIVE or agent != current.agent:
            raise HTTPException(status_code=403, detail="claim the conversation first")

    async def end_or_409(
        conversation_id: str, state: State, agent: str, resolution: Resolution | None = None
    ) -> bool:
        """End the handoff; False when it was already over (then the customer is not told again)."""
        try:
            return await services().queue.end(conversation_id, state, agent, resolution)
        except NotHolder as error:
            raise HTTPException(status_code=409, detail="no longer yours") from error

    @router.post("/api/conversations/{conversation_id}/messages")
    async def send(conversation_id: str, body: Text, current: Session = Depends(session)) -> dict[str, bool]:
        await held_or_403(conversation_id, current)
        try:
            # an agent pasting a code must not put it into the tracker either
            await services().rasa.say(conversation_id, mask_card_codes(body.text), agent=current.agent)
        except RasaUnavailable as error:
            raise HTTPException(status_code=503, detail="could not reach the customer; try again") from error
        return {"ok": True}

    @router.post("/api/conversations/{conversation_id}/transfer")
    async def transfer(
        conversation_id: str, body: Transfer, current: Session = Depends(session)
    ) -> dict[str, bool]:
        found = await holder_or_403(conversation_id, current)
        if await services().agents.get(body.agent) is None:
            raise HTTPException(status_code=404, detail="no such agent")
        if body.agent == current.agent or body.agent not in await services().queue.online_agents():
            raise HTTPException(status_code=409, detail=f"{body.agent} is not online to take it")
        try:
            await services().queue.transfer(conversation_id, current.agent, body.agent)
        except NotHolder as error:
            raise HTTPException(status_code=409, detail="no longer yours") from error
        try:
            text = services().texts.get("utter_agent_joined", found.record.language, agent=body.agent)
            await services().rasa.say(conversation_id, text, agent=body.agent)
        except RasaUnavailable as error:
            logger.error("conversation %s: transferred, customer not told: %s", conversation_id, error)
        return {"ok": True}

    @router.post("/api/conversations/{conversation_id}/handback")
    async def hand_back(conversation_id: str, current: Session = Depends(session)) -> dict[str, bool]:
        found = await holder_or_403(conversation_id, current)
        if not await end_or_409(conversation_id, State.HANDED_BACK, current.agent):
            return {"ok": False}
        try:
            await services().rasa.resume(conversation_id)
            await services().rasa.say(
                conversation_id, services().texts.get("utter_handed_back", found.record.language)
            )
        except RasaUnavailable as error:
            logger.error("conversation %s: handed back, Rasa unreachable: %s", conversation_id, error)
        return {"ok": True}

    @router.post("/api/conversations/{conversation_id}/close")
    async def close(
        conversation_id: str, body: Close, current: Session = Depends(session)
    ) -> dict[str, bool]:
        found = await holder_or_403(conversation_id, current)
        if not await end_or_409(conversation_id, State.CLOSED, current.agent, body.resolution):
            return {"ok": False}
        language = found.record.language
        buttons = [{"title": "⭐" * n, "payload": f'/rate{{"rating":"{n}"}}'} for n in range(5, 0, -1)]
        try:
            await services().rasa.resume(conversation_id)
            await services().rasa.say(
                conversation_id, services().texts.get("utter_ask_rating", language), buttons=buttons
            )
        except RasaUnavailable as error:
            logger.error("conversation %s: closed, rating not asked: %s", conversation_id, error)
        return {"ok": True}

    @router.get("/api/canned")
    async def canned(language: str = "en", current: Session = Depends(session)) -> list[dict[str, str]]:
        return CANNED.get(language, CANNED["en"])

    @router.get("/api/tickets")
    async def tickets(current: Session = Depends(session)) -> list[dict[str, Any]]:
        from dataclasses import asdict

        return [asdict(t) for t in await services().tickets.all()]

    @router.post("/api/tickets/{ticket_id}/reply")
    async def reply_ticket(
        ticket_id: str, body: Text, current: Session = Depends(session)
    ) -> dict[str, bool]:
        try:
            await services().tickets.answer(ticket_id, current.agent, mask_card_codes(body.text))
        except TicketNotFound as error:
            raise HTTPException(status_code=404, detail="no such ticket") from error
        except TicketClosed as error:
            raise HTTPException(status_code=409, detail="this ticket was already answered") from error
        return {"ok": True}

    @router.post("/api/tickets/{ticket_id}/close")
    async def close_ticket(ticket_id: str, current: Session = Depends(session)) -> dict[str, bool]:
        try:
            await services().tickets.close(ticket_id, current.agent)
        except TicketNotFound as error:
            raise HTTPException(status_code=404, detail="no such ticket") from error
        return {"ok": True}

    @router.get("/api/supervisor/stats")
    async def stats(current: Session = Depends(supervisor)) -> dict[str, Any]:
        return await services().queue.stats()

    grouped: dict[str, Any] = {}

    async def unanswered_groups() -> list[dict[str, Any]]:
        current = services()
        analytics = current.queue.analytics
        questions = await analytics.unanswered_questions(limit=UNANSWERED_GROUPED)
        newest = questions[0].get("time", "") + str(len(questions)) if questions else ""
        if grouped.get("key") == newest and time.monotonic() - grouped.get("at", 0.0) < GROUPS_TTL_SECONDS:
            return list(grouped["groups"])
        groups: list[dict[str, Any]] = []
        if questions and current.knowledge is not None:
            retriever = await asyncio.to_thread(current.knowledge().get)
            encoder = retriever.snapshot.encoder
            vectors = await asyncio.to_thread(encoder.encode_many, [q["text"] for q in questions])
            # each encoder has its own band of "means the same" (e5 scores sit high and close together)
            groups = group_by_meaning(questions, vectors, threshold=encoder.spec.same_meaning)
            for group in groups:
                hits = await asyncio.to_thread(retriever.search, group["question"], group["language"], 1)
                group["nearest_article"] = hits[0].title if hits else None
                group["category"] = hits[0].category if hits else "general"
        elif questions:
            # no knowledge base loaded: the same questions, counted as written
            counts: dict[str, int] = {}
            for q in questions:
                counts[q["text"]] = counts.get(q["text"], 0) + 1
            groups = [
                {"question": t, "count": c, "language": "", "examples": [t], "category": "general"}
                for t, c in sorted(counts.items(), key=lambda kv: -kv[1])[:10]
            ]
        grouped.update(key=newest, at=time.monotonic(), groups=groups)
        return groups

    @router.get("/api/supervisor/analytics")
    async def analytics(days: int = 14, current: Session = Depends(supervisor)) -> dict[str, Any]:
        """Containment, handoffs by reason, first response against SLA, CSAT per day; top unanswered."""
        days = max(1, min(days, 90))
        queue = services().queue
        report = await queue.analytics.report(days)
        try:
            report["unanswered"] = await unanswered_groups()
        except (FileNotFoundError, OSError) as error:
            logger.warning("analytics: unanswered questions not grouped: %s", error)
            report["unanswered"] = []
        return report

    @router.post("/api/supervisor/drafts")
    async def create_draft(body: Draft, current: Session = Depends(supervisor)) -> dict[str, str]:
        """A new knowledge-base article file, prefilled from a group of unanswered questions."""
        path, text = await asyncio.to_thread(
            draft_article,
            services().drafts_dir,
            body.question,
            body.language,
            [body.question, *body.examples],
        )
        logger.info("supervisor %s drafted %s", current.agent, path.name)
        return {"name": path.name, "language": body.language, "path": str(path), "text": text}

    @router.put("/api/supervisor/drafts/{language}/{name}")
    async def save_draft(
        language: str, name: str, body: DraftText, current: Session = Depends(supervisor)
    ) -> dict[str, Any]:
        """Save the editor's text; says whether the article would pass the knowledge base's checks."""
        if language not in ("zh", "en") or not DRAFT_NAME.fullmatch(name):
            raise HTTPException(status_code=404, detail="no such draft")
        path = services().drafts_dir / language / name
        if not path.is_file():
            raise HTTPException(status_code=404, detail="no such draft")
        await asyncio.to_thread(path.write_text, body.text, "utf-8")
        try:
            parse_article(path)
        except ArticleError as error:
            return {"saved": True, "valid": False, "problem": str(error)}
        return {"saved": True, "valid": True, "problem": None}

    @router.websocket("/api/agent/ws")
    async def live(websocket: WebSocket) -> None:
        agents = services().agents
        current = await agents.session(websocket.cookies.get(COOKIE))
        origin = websocket.headers.get("origin")
        # SameSite cookies also travel from other ports of this host: only our own pages may connect
        if current is None or (origin and urlsplit(origin).netloc != websocket.headers.get("host")):
            await websocket.close(code=4401)
            return
        await websocket.accept()
        queue = services().queue
        await queue.heartbeat(current.agent)

        async def listen() -> None:
            while True:
                message = await websocket.receive_json()
                if isinstance(message, dict) and message.get("type") == "ping":
                    # a logged-out, expired or removed agent's socket stops here
                    if await agents.session(current.token) is None:
                        await websocket.close(code=4401)
                        return
                    await queue.heartbeat(current.agent)

        async def forward() -> None:
            last = await queue.last_event_id()
            while True:
                for entry_id, event in await queue.read_events(last, block_ms=5000):
                    last = entry_id
                    if event.kind == "line":
                        state, holder, _ = await queue.brief(event.conversation_id)
                        if not may_see(current, state, holder):
                            continue
                        await websocket.send_json(
                            {
                                "type": "line",
                                "conversation_id": event.conversation_id,
                                "line": masked_line(event.data.get("line") or {}),
                            }
                        )
                    else:
                        await websocket.send_json({"type": "queue"})
                        await websocket.send_json(
                            {"type": "conversation", "conversation_id": event.conversation_id}
                        )

        tasks = [asyncio.create_task(listen()), asyncio.create_task(forward())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                logger.warning("agent %s: console socket closed: %r", current.agent, error)

    return router
