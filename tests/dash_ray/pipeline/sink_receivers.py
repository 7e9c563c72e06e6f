"""Real receivers on loopback for the sinks' tests: an HTTP receiver (aiohttp, in the test's
event loop) answering a script of statuses, and an SMTP server (aiosmtpd) keeping the mails."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


@dataclass
class Receiver:
    """Answers each POST with the next (status, headers) of `script`, then 200 for ever."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each request came (time.monotonic)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, headers = self.script.pop(0) if self.script else (200, {})
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body, status))
        self.times.append(time.monotonic())
        return web.Response(status=status, headers=headers, text="ok" if status == 200 else "no")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b, status in self.requests if status == 200]


class _Mailbox:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.box = _Mailbox()
        with socket.socket() as probe:  # a free port (aiosmtpd checks it is up by connecting to it)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._controller = Controller(self.box, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
