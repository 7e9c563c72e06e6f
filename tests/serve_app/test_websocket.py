"""`serve_app.websocket`, through a real uvicorn server on loopback and real `websockets`
clients: permessage-deflate is still negotiated (no context takeover either way) and no zlib
stream is kept between messages; a client without deflate is served too; the handshake's
request and response are let go; pings still find a dead peer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from serve_app.websocket import LiveWebSocketProtocol
from tests.waiting import until


class Echo:
    """An ASGI app: accepts, echoes text, notes when the client is gone."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message["text"]})
        self.gone.set()


@contextlib.asynccontextmanager
async def _serve(app: Echo, *, ping_interval_s: float = 15.0) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(app, ws=LiveWebSocketProtocol, ws_ping_interval=ping_interval_s,
                            ws_ping_timeout=ping_interval_s, ws_max_size=64 * 1024, lifespan="off",
                            log_level="warning", http="httptools")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started, what="uvicorn to start")
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        await task
        sock.close()


def _protocol(server: uvicorn.Server) -> LiveWebSocketProtocol:
    (protocol,) = [c for c in server.server_state.connections if isinstance(c, LiveWebSocketProtocol)]
    return protocol


async def test_deflate_without_context_takeover_and_no_zlib_stream_kept() -> None:
    app = Echo()
    async with _serve(app) as (port, server), connect(f"ws://127.0.0.1:{port}/") as ws:
        (agreed,) = ws.protocol.extensions
        assert isinstance(agreed, PerMessageDeflate)
        assert agreed.local_no_context_takeover and agreed.remote_no_context_takeover
        text = '{"seq": 1, "records": [' + ", ".join(f'{{"seq": {i}}}' for i in range(200)) + "]}"
        for _ in range(3):
            await ws.send(text)
            assert await ws.recv() == text
        protocol = _protocol(server)
        (extension,) = protocol.conn.extensions
        assert not hasattr(extension, "encoder") and not hasattr(extension, "decoder")
        assert protocol.request is None and protocol.response is None


async def test_a_client_without_deflate_is_served() -> None:
    app = Echo()
    async with _serve(app) as (port, _), connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        assert ws.protocol.extensions == []
        await ws.send("hello")
        assert await ws.recv() == "hello"


async def test_pings_find_a_dead_peer() -> None:
    app = Echo()
    async with _serve(app, ping_interval_s=0.2) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        # Never answers the server's pings: the server gives up on it after a ping interval
        # and a ping timeout, and the app sees it go.
        await asyncio.wait_for(app.gone.wait(), 5.0)
        writer.close()
