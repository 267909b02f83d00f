"""schemathesis against the handoff service's OpenAPI schema, on the real stack: no server errors.

Every operation the schema describes gets generated requests (valid and invalid
bodies, odd path ids) from a logged-in supervisor with the CSRF header, and
again without a session. Whatever comes in, the service answers 2xx/4xx, never
5xx. Bounded: a fixed number of examples per operation, no shrinking deadline.
Logging out is left out: it would end the session the other requests use.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.auth import AgentDirectory, Role
from handoff.queue import HandoffQueue
from scripts.stack import Stack

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 25
SKIPPED = {("POST", "/api/agent/logout")}
# the fuzzer's own loopback address: its hundreds of failed logins lock that address out (as they
# should), not 127.0.0.1, from which every other test of the session logs in
FUZZER_ADDRESS = "127.0.0.77"


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connections that leave from a chosen local address."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["source_address"] = (FUZZER_ADDRESS, 0)
        super().init_poolmanager(*args, **kwargs)  # type: ignore[no-untyped-call]


def fuzzer_session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress())
    return session


async def _supervisor(stack: Stack, name: str, password: str) -> None:
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    await AgentDirectory(queue.client, stack.settings.key_prefix).add(name, password, Role.SUPERVISOR)
    await queue.close()


def test_no_generated_request_gets_a_server_error(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.settings.web_port}"
    name, password = "fuzz-" + secrets.token_hex(3), secrets.token_urlsafe(12)
    asyncio.run(_supervisor(stack, name, password))
    session = fuzzer_session()
    login = session.post(f"{base}/api/agent/login", json={"name": name, "password": password}, timeout=10)
    assert login.status_code == 200, login.text
    csrf = login.json()["csrf"]
    document = session.get(f"{base}/api/openapi.json", timeout=10).json()
    assert httpx.get(f"{base}/api/openapi.json", timeout=10).status_code == 401, (
        "the schema is for agents only"
    )
    schema = schemathesis.openapi.from_dict(document)

    operations = [result.ok() for result in schema.get_all_operations()]
    tested, failures = [], []
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        tested.append(f"{operation.method.upper()} {operation.path}")

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), logged_in=st.booleans())
        def exercise(case: schemathesis.Case, logged_in: bool) -> None:
            client = session if logged_in else fuzzer_session()
            response = case.call(base_url=base, session=client, headers={"X-CSRF-Token": csrf}, timeout=15)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        exercise()
    assert len(tested) >= 10, f"the schema lists too few operations: {tested}"
    assert not failures, "server errors:\n" + "\n".join(sorted(set(failures)))
    # the session still works after all of that
    assert session.get(f"{base}/api/agent/me", timeout=10).status_code == 200
