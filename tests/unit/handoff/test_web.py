"""ServiceHeaders, the handoff service's ASGI middleware: headers and the request counter (no network)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient

from handoff.web import HTTP_REQUESTS, NON_PAGE_CSP, SECURITY_HEADERS, ServiceHeaders


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/api/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        if thing == "missing":
            raise HTTPException(status_code=404, detail="no such thing")
        return {"thing": thing}

    @api.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'self'"})

    api.add_middleware(ServiceHeaders)
    return api


def count(path: str, status: str) -> float:
    return HTTP_REQUESTS.labels(path, status)._value.get()


def test_api_answers_carry_the_security_headers_and_no_store() -> None:
    reply = TestClient(app()).get("/api/things/a")
    assert reply.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value
    assert reply.headers["Content-Security-Policy"] == NON_PAGE_CSP
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_a_page_keeps_its_own_policy() -> None:
    reply = TestClient(app()).get("/page")
    assert reply.headers["Content-Security-Policy"] == "default-src 'self'"
    assert "Cache-Control" not in reply.headers


def test_requests_are_counted_by_route_template_and_status() -> None:
    client = TestClient(app())
    ok, missing = count("/api/things/{thing}", "200"), count("/api/things/{thing}", "404")
    unrouted = count("other", "404")
    client.get("/api/things/a")
    client.get("/api/things/b")
    client.get("/api/things/missing")
    client.get("/nowhere")
    assert count("/api/things/{thing}", "200") == ok + 2
    assert count("/api/things/{thing}", "404") == missing + 1
    # an unknown path has no route: one label for all of them, so scanners cannot grow the metric
    assert count("other", "404") == unrouted + 1
    assert client.get("/nowhere").headers["Content-Security-Policy"] == NON_PAGE_CSP
