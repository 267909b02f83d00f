"""The handoff service on :8000: agent console and API, demo page, widget, history, KB search.

It talks to Rasa over Rasa's HTTP API with the server token; the browser never
sees that token. Its background workers (handoff/workers.py) admit handoff
requests into the queue, follow what customers write during a handoff and
tell waiting customers their place in the line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.ids import valid_conversation_id
from common.secrets import bearer_matches, conversation_secret_ok
from common.settings import Settings
from handoff import metrics as queue_metrics
from handoff.auth import AgentDirectory
from handoff.console import COOKIE, Services
from handoff.console import create_router as console_router
from handoff.history import history_from_events
from handoff.queue import HandoffQueue
from handoff.rasa_api import CustomerTexts, RasaApi
from handoff.tickets import TicketBook
from handoff.workers import Workers, consumer_name
from knowledge.api import create_router as knowledge_router
from knowledge.config import KnowledgeConfig
from knowledge.retriever import ReloadingRetriever

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

# the largest body any route takes is a knowledge-base draft (100,000 characters of UTF-8)
MAX_BODY_BYTES = 512 * 1024
SECRET_HEADER = "x-conversation-secret"  # noqa: S105 - a header name, not a secret

HTTP_REQUESTS = Counter("web_http_requests_total", "HTTP requests", ["path", "status"])
HISTORY_LATENCY = Histogram("web_history_seconds", "Time to fetch a chat history from Rasa")


# What the widget may load from another site's page: its script and the socket.io client.
EMBEDDABLE_PATHS = ("/widget.js", "/static/vendor/")
# JSON, scripts, styles: nothing in them may run, frame or load anything
NON_PAGE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def demo_csp(rasa_origin: str) -> str:
    """The demo page's policy: our scripts only; talk to us and to Rasa (its socket.io included).

    Styles allow 'unsafe-inline' because the widget puts its stylesheet into a <style> element it
    creates (it must work on any shop's page without a second request); scripts never do.
    """
    socket_origin = rasa_origin.replace("https://", "wss://").replace("http://", "ws://")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"connect-src 'self' {rasa_origin} {socket_origin}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    )


def add_security_headers(path: str, headers: MutableHeaders) -> None:
    """Headers every response of the service carries; pages bring their own CSP, the rest get NON_PAGE_CSP."""
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    embeddable = path.startswith(EMBEDDABLE_PATHS)
    headers.setdefault("Cross-Origin-Resource-Policy", "cross-origin" if embeddable else "same-origin")
    headers.setdefault("Content-Security-Policy", NON_PAGE_CSP)
    if path.startswith("/api/"):
        # agent data must not sit in shared or browser caches
        headers.setdefault("Cache-Control", "no-store")


class ServiceHeaders:
    """Counts every response by route and status and adds the service's headers.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory stream, which was the largest share of this
    service's CPU when 50 agent replies arrived at once (bench/handoff.py --profile).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(path, MutableHeaders(scope=message))
                # the router puts the matched route into the shared scope on its way down
                route = scope.get("route")
                HTTP_REQUESTS.labels(getattr(route, "path", "other"), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or as it streams in.

    Nothing else stops a client from making the service buffer (and pydantic echo) 10 MB.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await too_large(send)


class BodyTooLarge(Exception):
    pass


async def too_large(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Where the request is wrong and why, without the input itself (it may be 10 MB or a password)."""
    return [
        {"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "")), "type": str(item.get("type", ""))}
        for item in error.errors()
    ]


def create_app(settings: Settings | None = None, run_workers: bool = True) -> FastAPI:
    settings = settings or Settings.from_env()
    state: dict[str, Any] = {}

    def services() -> Services:
        # created on first use, inside the server's event loop
        if "services" not in state:
            queue = HandoffQueue.create(settings.redis_url, settings.key_prefix)
            state["services"] = Services(
                queue=queue,
                agents=AgentDirectory(queue.client, settings.key_prefix),
                tickets=TicketBook(queue.client, settings.key_prefix),
                rasa=RasaApi(settings.rasa_url, settings.rasa_token),
                texts=CustomerTexts(),
                knowledge=knowledge,
                drafts_dir=settings.var_dir / "kb-drafts",
            )
        found: Services = state["services"]
        return found

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_workers:
            current = services()
            workers = Workers(
                current.queue,
                current.rasa,
                current.texts,
                consumer_name(),
                retention_days=settings.retention_days,
            )
            state["workers"] = asyncio.create_task(workers.run())
        yield
        if "workers" in state:
            state["workers"].cancel()
            await asyncio.gather(state["workers"], return_exceptions=True)
        if "services" in state:
            await state["services"].rasa.close()
            await state["services"].queue.close()
        if "rasa" in state:
            await state["rasa"].aclose()

    app = FastAPI(
        title="StarCard support handoff service",
        version="0.2.0",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(console_router(services))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_errors(error)}, status_code=422)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, _: RecursionError) -> JSONResponse:
        # a JSON body nested thousands deep: malformed input, not a server fault
        logger.info("%s %s: body nested too deep", request.method, request.url.path)
        return JSONResponse({"detail": "request body nested too deep"}, status_code=400)

    @app.exception_handler(UnicodeEncodeError)
    async def not_unicode(request: Request, _: UnicodeEncodeError) -> JSONResponse:
        # JSON may carry lone surrogates ("\ud800"), which no UTF-8 store or hash accepts
        logger.info("%s %s: text that is not valid Unicode", request.method, request.url.path)
        return JSONResponse({"detail": "text must be valid Unicode"}, status_code=400)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, error: RedisError) -> JSONResponse:
        # the queue lives in Redis: without it, say "try again" rather than 500
        logger.error("%s %s: Redis unavailable: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": "the queue is unavailable, please retry"}, status_code=503)

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        # the schema describes the agent API, so it answers agents only
        if await services().agents.session(request.cookies.get(COOKIE)) is None:
            raise HTTPException(status_code=401, detail="log in first")
        return JSONResponse(app.openapi())

    async def agent_only(request: Request) -> None:
        # the knowledge search is the console's: the same rule as the rest of the agent API
        if await services().agents.session(request.cookies.get(COOKIE)) is None:
            raise HTTPException(status_code=401, detail="log in first")

    # the widget on a shop's page reads its history from here: the same allow-list Rasa uses
    app.add_middleware(
        CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["GET"], allow_headers=["*"]
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    demo_html = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")

    def knowledge() -> ReloadingRetriever:
        # the index is loaded on the first search, not at start-up
        if "knowledge" not in state:
            state["knowledge"] = ReloadingRetriever(KnowledgeConfig.from_env())
        holder: ReloadingRetriever = state["knowledge"]
        return holder

    app.include_router(knowledge_router(knowledge), dependencies=[Depends(agent_only)])

    def rasa_client() -> httpx.AsyncClient:
        # created on first use, inside the server's event loop
        if "rasa" not in state:
            state["rasa"] = httpx.AsyncClient(base_url=settings.rasa_url, timeout=5.0)
        client: httpx.AsyncClient = state["rasa"]
        return client

    app.add_middleware(BodyLimit)
    app.add_middleware(ServiceHeaders)

    @app.get("/", response_class=HTMLResponse)
    async def demo_page(request: Request) -> HTMLResponse:
        rasa_public = (
            settings.public_rasa_url or f"{request.url.scheme}://{request.url.hostname}:{settings.rasa_port}"
        )
        return HTMLResponse(
            demo_html.replace("{{RASA_URL}}", rasa_public),
            headers={"Content-Security-Policy": demo_csp(rasa_public)},
        )

    @app.get("/widget.js")
    async def widget() -> FileResponse:
        return FileResponse(STATIC_DIR / "widget.js", media_type="application/javascript")

    @app.get("/api/history/{session_id}")
    async def history(session_id: str, request: Request) -> JSONResponse:
        if not valid_conversation_id(session_id):
            raise HTTPException(status_code=400, detail="invalid session id")
        # the id alone is no credential: the widget shows the secret Rasa issued with it
        if not conversation_secret_ok(
            settings.conversation_key, session_id, request.headers.get(SECRET_HEADER)
        ):
            raise HTTPException(status_code=403, detail="missing or wrong conversation secret")
        started = time.perf_counter()
        try:
            reply = await rasa_client().get(
                f"/conversations/{session_id}/tracker",
                params={"token": settings.rasa_token, "include_events": "ALL"},
            )
        except httpx.HTTPError as error:
            logger.warning("conversation %s: history unavailable: %s", session_id, error)
            raise HTTPException(status_code=503, detail="assistant unavailable") from error
        finally:
            HISTORY_LATENCY.observe(time.perf_counter() - started)
        if reply.status_code != 200:
            logger.warning("conversation %s: Rasa answered %s for the tracker", session_id, reply.status_code)
            raise HTTPException(status_code=502, detail="assistant error")
        events = reply.json().get("events") or []
        return JSONResponse({"session_id": session_id, "messages": history_from_events(events)})

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def ready() -> JSONResponse:
        checks = {"redis": False, "rasa": False}
        try:
            checks["redis"] = bool(await services().queue.client.ping())
        except RedisError as error:
            logger.warning("readiness: Redis does not answer: %s", error)
        try:
            checks["rasa"] = (await rasa_client().get("/")).status_code == 200
        except httpx.HTTPError as error:
            logger.warning("readiness: Rasa does not answer: %s", error)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not bearer_matches(request.headers.get("authorization"), settings.metrics_token):
            raise HTTPException(status_code=401, detail="metrics need the METRICS_TOKEN")
        try:
            await queue_metrics.refresh(services().queue)
        except RedisError as error:
            # the process's own metrics are still worth a scrape
            logger.warning("metrics: queue figures unavailable: %s", error)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
