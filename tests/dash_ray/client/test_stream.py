"""LiveStream (the SDK's `Client.stream`) against a real WebSocket server on loopback that
drops the connection mid-stream: it reconnects with `after=<last seq>` and yields every record
once, in order; close codes and handshake refusals that retrying cannot fix end it with the
matching error; gaps are yielded only when asked for."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import parse_qs, urlparse

import orjson
import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from dash_ray.client.stream import Gap, LiveStream
from dash_ray.errors import AuthError, NotFoundError


class Server:
    """Serves seqs 1..total in messages of 3; drops the first connection after 2 messages.
    Records `after` of each connection."""

    def __init__(self, total: int = 20, *, close_code: int | None = None, refuse: int | None = None,
                 gap: tuple[int, int] | None = None, going_away: bool = False) -> None:
        self.total, self.close_code, self.refuse, self.gap = total, close_code, refuse, gap
        self.going_away = going_away  # the first connection ends with a clean close (1001), not a drop
        self.afters: list[int | None] = []

    async def handler(self, ws) -> None:
        query = parse_qs(urlparse(ws.request.path).query)
        after = int(query["after"][0]) if "after" in query else None
        self.afters.append(after)
        if self.close_code:
            await ws.close(self.close_code, "no")
            return
        cursor = after or 0
        await ws.send(orjson.dumps({"seq": cursor, "records": []}).decode())
        if self.gap and cursor < self.gap[0]:
            await ws.send(orjson.dumps({"type": "gap", "from": self.gap[0], "to": self.gap[1]}).decode())
            cursor = self.gap[1]
        sent = 0
        while cursor < self.total:
            seqs = range(cursor + 1, min(cursor + 3, self.total) + 1)
            await ws.send(orjson.dumps({"seq": seqs[-1], "records": [
                {"seq": s, "time": "", "data": {"n": s}} for s in seqs]}).decode())
            cursor = seqs[-1]
            sent += 1
            if len(self.afters) == 1 and sent == 2:
                if self.going_away:
                    await ws.close(1001, "going away")
                else:
                    ws.transport.abort()  # a dropped connection, no close frame
                return
        await ws.wait_closed()

    def process_request(self, connection, request):
        if self.refuse:
            return Response(self.refuse, "refused", Headers(), b"")
        return None


def _run(server: Server, consume) -> None:
    async def main() -> None:
        async with serve(server.handler, "127.0.0.1", 0, process_request=server.process_request) as running:
            port = running.sockets[0].getsockname()[1]
            await asyncio.wait_for(consume(f"http://127.0.0.1:{port}"), 30)

    asyncio.run(main())


def test_resumes_after_a_dropped_connection_with_every_record_once() -> None:
    server = Server()

    async def consume(url: str) -> None:
        stream = LiveStream(url, "p", after=0)
        seqs = []
        async for record in stream:
            seqs.append(record["seq"])
            if len(seqs) == 20:
                break
        assert seqs == list(range(1, 21))
        assert stream.reconnects == 1

    _run(server, consume)
    assert server.afters == [0, 6]


def test_the_sync_iterator_does_the_same() -> None:
    server = Server()
    seqs: list[int] = []

    async def consume(url: str) -> None:
        def read() -> None:
            for record in LiveStream(url, "p"):
                seqs.append(record["seq"])
                if len(seqs) == 20:
                    return

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, 30)  # the server runs in this loop meanwhile
        assert not thread.is_alive(), "the reader did not get its records within 30 s"

    _run(server, consume)
    assert seqs == list(range(1, 21))
    assert server.afters == [None, 6]  # joined the tail, then resumed after what it had


@pytest.mark.parametrize("sync", [False, True])
def test_a_clean_close_by_the_server_is_resumed_too(sync: bool) -> None:
    # A replica going away closes with 1001: the iteration ends without an exception, and the
    # stream reconnects after what it had, as after a dropped connection.
    server = Server(going_away=True)
    seqs: list[int] = []

    async def consume(url: str) -> None:
        stream = LiveStream(url, "p", after=0)

        def read() -> None:
            for record in stream:
                seqs.append(record["seq"])
                if len(seqs) == 20:
                    return

        if sync:
            thread = threading.Thread(target=read, daemon=True)
            thread.start()
            await asyncio.to_thread(thread.join, 30)
            assert not thread.is_alive(), "the reader did not get its records within 30 s"
        else:
            async for record in stream:
                seqs.append(record["seq"])
                if len(seqs) == 20:
                    break
        assert stream.reconnects == 1

    _run(server, consume)
    assert seqs == list(range(1, 21))
    assert server.afters == [0, 6]


def test_gaps_are_yielded_when_asked_and_skipped_otherwise() -> None:
    server = Server(total=12, gap=(1, 4))

    async def consume(url: str) -> None:
        stream = LiveStream(url, "p", after=0, gaps=True)
        items = []
        async for item in stream:
            items.append(item)
            if not isinstance(item, Gap) and item["seq"] == 12:
                break
        assert items[0] == Gap(1, 4)
        assert [i["seq"] for i in items[1:]] == list(range(5, 13))
        assert stream.seen_gaps == [Gap(1, 4)]

    _run(server, consume)


@pytest.mark.parametrize(("server", "error"), [
    (Server(close_code=4401), AuthError),
    (Server(close_code=4404), NotFoundError),
    (Server(refuse=404), NotFoundError),
    (Server(refuse=401), AuthError),
])
def test_what_retrying_cannot_fix_ends_the_stream(server: Server, error: type) -> None:
    async def consume(url: str) -> None:
        with pytest.raises(error):
            async for _ in LiveStream(url, "p"):
                pass

    _run(server, consume)
    assert len(server.afters) <= 1


def test_a_consumer_that_stops_mid_message_gets_the_rest_when_it_iterates_again() -> None:
    # Messages carry 3 records each: stopping after the first record of one must not skip
    # the other two (issue 21, item 8).
    server = Server(total=9)

    async def consume(url: str) -> None:
        stream = LiveStream(url, "p", after=3)
        async for record in stream:
            first = record["seq"]
            break
        rest: list[int] = []
        async for record in stream:
            rest.append(record["seq"])
            if rest[-1] == 9:
                break
        assert first == 4 and rest == [5, 6, 7, 8, 9]

    _run(server, consume)
    assert server.afters[:2] == [3, 4]


def test_the_sync_iterator_stopping_mid_message_also_resumes_at_the_next_record() -> None:
    server = Server(total=9)
    got: list[int] = []

    async def consume(url: str) -> None:
        def read() -> None:
            stream = LiveStream(url, "p", after=3)
            for record in stream:
                got.append(record["seq"])
                break
            for record in stream:
                got.append(record["seq"])
                if record["seq"] == 9:
                    return

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, 30)  # the server runs in this loop meanwhile
        assert not thread.is_alive(), "the reader did not get its records within 30 s"

    _run(server, consume)
    assert got == [4, 5, 6, 7, 8, 9]


def test_control_messages_it_does_not_know_move_nothing() -> None:
    stream = LiveStream("http://127.0.0.1:1", "p", after=None)
    assert list(stream._items('{"type": "status", "status": "failed", "message": "m"}')) == []
    assert stream.after is None and stream.status == "failed"
    assert list(stream._items('{"seq": 7, "records": []}')) == [] and stream.after == 7
    assert stream.status is None  # data again: it runs
    list(stream._items('{"type": "status", "status": "restarting", "message": "m"}'))
    assert stream.status == "restarting"
    list(stream._items('{"type": "status", "status": "running"}'))
    assert stream.status is None and stream.after == 7
