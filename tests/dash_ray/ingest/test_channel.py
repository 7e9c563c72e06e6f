"""The ingest channel between a web replica and a pipeline actor, over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import msgpack
import pytest

from dash_ray.errors import BackpressureError, InternalError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch, Rejections
from dash_ray.ingest.channel import (
    ChannelClient,
    ChannelClosed,
    ChannelServer,
    Endpoint,
    decode_batches,
    encode_batches,
)
from tests.waiting import until


def _batch(i: int, **kw) -> RawBatch:
    return RawBatch(b'{"n": %d}\n' % i, 1, 1_700_000_000_000_000 + i, **kw)


def test_batches_cross_the_codec_with_every_field():
    rejected = Rejections.of([0, 1, 3], "not an object")
    batches = [_batch(1), _batch(2, idempotency_key="k", replay_key="r", rejected=rejected),
               RawBatch(b"", 0, 5)]
    assert decode_batches(encode_batches(batches)) == batches


class Echo:
    """Acks each batch with consecutive seqs; optional errors and delays."""

    def __init__(self) -> None:
        self.seq = 0
        self.calls: list[list[RawBatch]] = []
        self.gate: asyncio.Event | None = None
        self.answer_with: object = None

    async def __call__(self, batches):
        self.calls.append(batches)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer_with, Exception):
            raise self.answer_with
        out = []
        for b in batches:
            if b.idempotency_key == "full":
                out.append(BackpressureError("the queue is full", retry_after=2.5))
                continue
            out.append(Ack(b.count - len(b.rejected), self.seq + 1, self.seq + b.count, b.rejected))
            self.seq += b.count
        return out


async def _pair(handler):
    server = ChannelServer(handler)
    endpoint = await server.start()
    return server, ChannelClient(endpoint)


async def test_acks_and_errors_come_back_to_their_calls():
    echo = Echo()
    server, client = await _pair(echo)
    try:
        rejected = Rejections.of([1], "not an object")
        acks = await client.call([_batch(1), RawBatch(b"1\n2\n", 2, 0, rejected=rejected),
                                  _batch(3, idempotency_key="full")])
        assert acks[0] == Ack(1, 1, 1)
        assert acks[1].accepted == 1 and (acks[1].first_seq, acks[1].last_seq) == (2, 3)
        assert [(r.index, r.reason) for r in acks[1].rejected] == [(1, "not an object")]
        assert isinstance(acks[2], BackpressureError) and acks[2].retry_after == 2.5
        # Concurrent calls on one connection each get their own answer.
        results = await asyncio.gather(*(client.call([_batch(i)]) for i in range(50)))
        assert sorted(r[0].first_seq for r in results) == list(range(4, 54))
        assert {c[0].payload for c in echo.calls[1:]} == {_batch(i).payload for i in range(50)}
    finally:
        await client.close()
        await server.close()


async def test_a_failing_handler_answers_every_batch_with_its_error():
    echo = Echo()
    server, client = await _pair(echo)
    try:
        echo.answer_with = UnavailableError("closing", retry_after=1.0)
        assert all(isinstance(r, UnavailableError) for r in await client.call([_batch(1), _batch(2)]))
        echo.answer_with = ZeroDivisionError("a bug")
        results = await client.call([_batch(1)])
        assert isinstance(results[0], InternalError) and "ZeroDivisionError" in results[0].message
        echo.answer_with = None
        assert isinstance((await client.call([_batch(1)]))[0], Ack)  # the connection survived
    finally:
        await client.close()
        await server.close()


async def test_a_wrong_token_is_refused_and_nothing_reaches_the_handler():
    echo = Echo()
    server = ChannelServer(echo)
    endpoint = await server.start()
    client = ChannelClient(Endpoint(endpoint.host, endpoint.port, b"x" * 32))
    try:
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(client.call([_batch(1)]), 5)
        assert echo.calls == []
        assert client.closed
    finally:
        await client.close()
        await server.close()


async def test_a_raw_peer_without_the_token_is_cut_off():
    echo = Echo()
    server = ChannelServer(echo)
    endpoint = await server.start()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    body = encode_batches([_batch(1)])
    writer.write(struct.pack("<II", len(body), 1) + body)  # a call, no answer to the challenge
    await writer.drain()
    said = await asyncio.wait_for(reader.read(), 5)
    assert reader.at_eof() and struct.unpack("<II", said[:8])[1] == 0  # its challenge, then closed
    assert len(said) == 8 + struct.unpack("<II", said[:8])[0]  # no answer to the call
    writer.close()
    assert echo.calls == []
    await server.close()


async def _call_held_in_handler():
    """A server whose handler holds its calls (until `echo.gate` is set), and a call inside it."""
    echo = Echo()
    echo.gate = asyncio.Event()
    server, client = await _pair(echo)
    call = asyncio.create_task(client.call([_batch(1)]))
    await until(lambda: echo.calls, what="the call inside the handler")
    return echo, server, client, call


async def test_calls_in_flight_fail_when_the_server_goes():
    echo, server, client, call = await _call_held_in_handler()
    for writer in list(server._connections.values()):  # the actor process dying: its sockets close
        writer.transport.abort()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(call, 5)
    assert client.closed
    with pytest.raises(ChannelClosed):
        await client.call([_batch(2)])
    echo.gate.set()
    await server.close()
    await client.close()


async def test_close_lets_calls_in_flight_finish():
    """Closing the server (the actor stopping) never cancels a call inside the handler: one
    cancelled in the log's append would fail the pipeline."""
    echo, server, client, call = await _call_held_in_handler()
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.05)  # not a synchronisation: a window in which the close must not finish
    assert not closing.done()
    echo.gate.set()
    await asyncio.wait_for(closing, 5)
    assert echo.seq == 1  # the handler ran to its end
    # Its answer may or may not have reached the client before the connection went.
    try:
        assert (await asyncio.wait_for(call, 5))[0] == Ack(1, 1, 1)
    except ChannelClosed:
        pass
    await client.close()


async def test_a_client_going_away_does_not_cancel_its_call():
    echo, server, client, call = await _call_held_in_handler()
    await client.close()
    with pytest.raises(ChannelClosed):
        await call
    echo.gate.set()
    await until(lambda: echo.seq == 1 and not server._calls, what="the handler to finish the call")
    await server.close()


async def test_connecting_to_nothing_is_a_channel_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChannelClient(Endpoint("127.0.0.1", port, b"t"))
    with pytest.raises(ChannelClosed, match="cannot connect"):
        await client.call([_batch(1)])
    await client.close()


async def test_an_oversized_frame_closes_the_connection():
    from dash_ray.ingest.channel import proof

    echo = Echo()
    server = ChannelServer(echo)
    endpoint = await server.start()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    size, _ = struct.unpack("<II", await reader.readexactly(8))
    answer = msgpack.packb(proof(endpoint.token, msgpack.unpackb(await reader.readexactly(size))))
    writer.write(struct.pack("<II", len(answer), 0) + answer + struct.pack("<II", 2**31, 1))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await server.close()


def test_every_call_a_replica_can_send_fits_in_a_frame():
    """The largest body a spec allows, plus the rest of a coalesced call, is under the bound
    (a frame past it would close the connection: 503 for that request forever)."""
    import annotated_types

    from dash_ray.ingest.channel import MAX_FRAME_BYTES
    from dash_ray.spec import LimitsSpec
    from serve_app.coalescer import Coalescer

    largest_body = next(m.le for m in LimitsSpec.model_fields["max_body_bytes"].metadata
                        if isinstance(m, annotated_types.Le))
    rest_of_call = Coalescer(lambda batches: None).max_call_bytes
    assert largest_body + rest_of_call + 2**20 < MAX_FRAME_BYTES


async def test_the_client_socket_finds_a_vanished_peer_by_keepalive_and_user_timeout():
    """A peer gone without a reset cannot hold calls forever: the client's socket probes an
    idle connection and drops one whose data stays unacknowledged (Linux options)."""
    server, client = await _pair(Echo())
    try:
        await client.call([_batch(1)])
        sock = client._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    finally:
        await client.close()
        await server.close()


# -- limits a peer that is not a web replica meets (issue 21, item 10) -----------------------

async def test_a_silent_connection_is_closed_after_the_auth_deadline():
    """A peer that connects and never authenticates holds a task, a reader and a descriptor
    in the pipeline actor: it is closed within a few seconds (the default deadline)."""
    server = ChannelServer(Echo())
    endpoint = await server.start()
    peers = [await asyncio.open_connection(endpoint.host, endpoint.port) for _ in range(20)]
    try:
        await until(lambda: not server._connections, timeout=15, what="the silent connections to be closed")
        for reader, _ in peers:  # each was closed by the server (after its challenge)
            await asyncio.wait_for(reader.read(), 5)
            assert reader.at_eof()
    finally:
        for _, writer in peers:
            writer.close()
        await server.close()


async def test_unauthenticated_connections_are_capped_and_a_replica_still_gets_in():
    """Past `max_unauthenticated` silent peers the oldest is dropped, so a flood holds at most
    that many (64 by default), and a real client connecting during the flood still gets in."""
    from dash_ray.ingest.channel import MAX_UNAUTHENTICATED

    echo = Echo()
    server = ChannelServer(echo)
    endpoint = await server.start()
    peers = [await asyncio.open_connection(endpoint.host, endpoint.port) for _ in range(3 * MAX_UNAUTHENTICATED)]
    client = ChannelClient(endpoint)
    try:
        # Every peer was accepted (the last one's descriptor reached the server) ...
        await until(lambda: len(server._connections) == MAX_UNAUTHENTICATED, what=f"{MAX_UNAUTHENTICATED} connections")
        # ... and the first ones were dropped to keep the count there.
        await asyncio.wait_for(peers[0][0].read(), 5)
        assert peers[0][0].at_eof()
        assert (await asyncio.wait_for(client.call([_batch(1)]), 5))[0] == Ack(1, 1, 1)
        assert len(server._connections) <= MAX_UNAUTHENTICATED + 1
    finally:
        for _, writer in peers:
            writer.close()
        await client.close()
        await server.close()


async def test_authenticated_connections_are_capped():
    server = ChannelServer(Echo(), max_connections=2)
    endpoint = await server.start()
    clients = [ChannelClient(endpoint) for _ in range(3)]
    try:
        for client in clients[:2]:
            assert isinstance((await client.call([_batch(1)]))[0], Ack)
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(clients[2].call([_batch(1)]), 5)
        assert isinstance((await clients[0].call([_batch(2)]))[0], Ack)  # the others are untouched
    finally:
        for client in clients:
            await client.close()
        await server.close()


class _Tap:
    """A TCP relay between a client and the server that keeps what the client sent."""

    def __init__(self, target: Endpoint) -> None:
        self.target = target
        self.sent = bytearray()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return Endpoint("127.0.0.1", self.server.sockets[0].getsockname()[1], self.target.token)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if keep:
                        self.sent += chunk
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_a_captured_handshake_cannot_be_replayed():
    """Someone who saw a replica's connection (its first frames, byte for byte) cannot open
    one of their own with them: the server asks each connection a fresh challenge."""
    echo = Echo()
    server = ChannelServer(echo)
    endpoint = await server.start()
    tap = _Tap(endpoint)
    client = ChannelClient(await tap.start())
    try:
        assert isinstance((await client.call([_batch(1)]))[0], Ack)
        await client.close()
        captured = bytes(tap.sent)
        size, call_id = struct.unpack("<II", captured[:8])
        assert call_id == 0
        handshake = captured[:8 + size]
        assert endpoint.token not in captured  # the secret itself never travels
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        body = encode_batches([_batch(2)])
        writer.write(handshake + struct.pack("<II", len(body), 1) + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        # Whatever the server said first (its challenge), it answered no call and hung up.
        assert reader.at_eof()
        assert len(echo.calls) == 1
        assert struct.pack("<I", 1) not in answer[4:8]
    finally:
        await client.close()
        await tap.close()
        await server.close()
