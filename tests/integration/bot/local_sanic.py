"""A Sanic app on an ephemeral loopback port, for tests that mount Rasa-side routes.

Sanic 21.12 reads ``port=0`` as "no port given" and binds 8000, the product's
web service port; handing it a socket bound to port 0 keeps the tests off every
port ``make run`` uses.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sanic import Sanic


@asynccontextmanager
async def running(app: Sanic) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 and yield its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
        sock.close()
