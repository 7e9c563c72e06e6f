"""The data path from a web replica to a pipeline actor: one TCP connection per replica and
pipeline, length-prefixed msgpack frames, several calls in flight on it.

Why not a Ray actor call: measured on this 2-core machine with signed single events, a Ray
call carrying ~15 coalesced requests cost the pipeline actor about 3.6 ms of CPU and the web
replica about 1.5 ms (serialising dataclasses with cloudpickle, tracing wrappers, the core
worker's own threads), several times the pipeline's whole work for those requests (~67 us
each, `benchmarks/ingest.py` prints the CPU per request of both processes). A frame on a
socket costs tens of microseconds. Ray stays the control plane: it places, names, supervises
and kills the actor, and the replica learns the actor's `Endpoint` (address, port and a secret
the actor drew at start) by a Ray call, so only a process Ray let in can connect.

What the channel trusts: a peer that proves it knows the actor's secret. The secret never
crosses the socket: the server opens each connection with a fresh random challenge and the
client answers with HMAC-SHA256(secret, challenge), so frames seen on the wire cannot be
replayed on another connection. It does not encrypt: records cross the network in clear, as
they do between Ray's own processes; run nodes on a private network. Limits a peer that is
not a replica meets: `auth_timeout_s` (5 s) to answer the challenge, at most
`max_unauthenticated` (64) connections waiting to (a new one drops the oldest, so a flood cannot
lock a replica out), at most `max_connections` (1,024) authenticated ones (one per replica).

Wire format, both directions: `<II` (body length, call id), then a msgpack body.
- The server's first frame (call id 0) is the challenge (32 random bytes); the client's first
  frame (call id 0) is its answer; a wrong or late answer closes the connection.
- A request body is a list of batches, each `[payload, count, received_at_us,
  idempotency_key, replay_key, rejected_runs, rejected_count, rejected_reason]`.
- A reply body (same call id) is a list, one per batch: `[0, accepted, first_seq, last_seq,
  [[index, reason], ...], duplicate]` for an Ack, `[1, status, error_body]` for an error (the
  JSON body the ingress would serve, rebuilt with `error_from_body`).
A connection that breaks fails its calls in flight with `ChannelClosed`: such a call may or
may not have been stored, exactly as when a Ray call's actor dies (`Idempotency-Key` covers it).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from dash_ray.errors import DashError, InternalError, error_from_body
from dash_ray.ingest.batch import NO_REJECTIONS, Ack, RawBatch, Rejection, Rejections
from dash_ray.timeouts import timeout

__all__ = ["ChannelClient", "ChannelClosed", "ChannelServer", "Endpoint", "decode_batches", "encode_batches", "proof"]

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")
# A coalesced call carries at most 32 MiB of records beside its first batch, which may be as
# large as a spec's `limits.max_body_bytes` allows (1 GiB): every frame a replica sends fits.
# The bound only stops an authenticated peer's corrupt length from allocating without limit.
MAX_FRAME_BYTES = 2**31 - 1
AUTH_TIMEOUT_S, MAX_UNAUTHENTICATED, MAX_CONNECTIONS = 5.0, 64, 1024
_CHALLENGE_BYTES = 32
_PROOF_CONTEXT = b"dash-ray ingest channel v1\0"

Handler = Callable[[list[RawBatch]], Awaitable[Sequence[Ack | DashError]]]


class ChannelClosed(ConnectionError):
    """The connection to the pipeline broke (or was refused) before the call was answered."""


@dataclass(frozen=True)
class Endpoint:
    """Where a pipeline actor takes ingest, and the secret a client proves it knows."""

    host: str
    port: int
    token: bytes = field(repr=False)


# -- codec -------------------------------------------------------------------------------

def encode_batches(batches: Sequence[RawBatch]) -> bytes:
    return msgpack.packb([
        [b.payload, b.count, b.received_at_us, b.idempotency_key, b.replay_key,
         b.rejected.runs, b.rejected.count, b.rejected.reason] for b in batches])


def decode_batches(body: bytes) -> list[RawBatch]:
    out = []
    for payload, count, at, key, replay, runs, rej_count, reason in msgpack.unpackb(body):
        rejected = Rejections(runs, rej_count, reason) if rej_count else NO_REJECTIONS
        out.append(RawBatch(payload, count, at, key, rejected, replay))
    return out


def _encode_results(results: Sequence[Ack | DashError]) -> bytes:
    out: list[list[Any]] = []
    for r in results:
        if isinstance(r, Ack):
            out.append([0, r.accepted, r.first_seq, r.last_seq, [[x.index, x.reason] for x in r.rejected],
                        r.duplicate])
        else:
            error = r if isinstance(r, DashError) else InternalError(f"{type(r).__name__}: {r}"[:500])
            out.append([1, error.status, error.to_body()])
    return msgpack.packb(out)


def _decode_results(body: bytes) -> list[Ack | DashError]:
    out: list[Ack | DashError] = []
    for item in msgpack.unpackb(body):
        if item[0] == 0:
            _, accepted, first, last, rejected, duplicate = item
            out.append(Ack(accepted, first, last, tuple(Rejection(i, why) for i, why in rejected), duplicate))
        else:
            out.append(error_from_body(item[1], item[2]))
    return out


def proof(token: bytes, challenge: bytes) -> bytes:
    """The answer to a server's challenge: HMAC-SHA256 of it under the endpoint's secret."""
    return hmac.digest(token, _PROOF_CONTEXT + challenge, "sha256")


# -- server ------------------------------------------------------------------------------

class ChannelServer:
    """Serves `handler` to clients that know the secret; one per pipeline actor."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0,
                 auth_timeout_s: float = AUTH_TIMEOUT_S, max_unauthenticated: int = MAX_UNAUTHENTICATED,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.token = secrets.token_bytes(32)
        self.auth_timeout_s = auth_timeout_s
        self.max_unauthenticated = max_unauthenticated
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # The connections still to answer their challenge, oldest first.
        self._unauthenticated: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # Calls run to the end even when their connection goes: cancelling one inside the
        # log's append would fail the pipeline.
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.endpoint

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.token)

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop listening, let the calls in flight finish, then drop every connection."""
        if self._server is not None:
            self._server.close()
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=timeout_s)
        # Closing a connection's socket ends its read loop (cancelling the task instead
        # makes asyncio's stream callback log the CancelledError).
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            _, stuck = await asyncio.wait(list(self._connections), timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) - len(self._unauthenticated) >= self.max_connections:
            log.warning("ingest channel: %d connections already; refusing another", self.max_connections)
            writer.transport.abort()
            return
        if len(self._unauthenticated) >= self.max_unauthenticated:
            # The oldest waiting peer goes: a replica answers in a round trip, so a flood
            # of silent peers cannot keep one out.
            oldest = next(iter(self._unauthenticated))
            self._unauthenticated.pop(oldest).transport.abort()
        self._connections[task] = self._unauthenticated[task] = writer
        _keepalive(writer)  # a replica gone without a reset does not keep its socket here
        try:
            try:
                async with timeout(self.auth_timeout_s):
                    authentic = await self._challenge(reader, writer)
            except asyncio.TimeoutError:
                authentic = False
            if not authentic:
                return
            del self._unauthenticated[task]
            while True:
                size, call_id = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                if size > MAX_FRAME_BYTES:
                    log.warning("ingest channel: a %d-byte frame is past the limit; closing", size)
                    return
                body = await reader.readexactly(size)
                call = asyncio.get_running_loop().create_task(self._call(writer, call_id, body))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)
        except (asyncio.IncompleteReadError, ConnectionError, TypeError, ValueError, msgpack.UnpackException):
            pass  # the peer went, or sent what is not a frame
        finally:
            self._connections.pop(task, None)
            self._unauthenticated.pop(task, None)
            writer.close()

    async def _challenge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Ask the peer to prove it knows the secret; whether it did."""
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        hello = msgpack.packb(challenge)
        writer.write(_HEAD.pack(len(hello), 0) + hello)
        size, call_id = _HEAD.unpack(await reader.readexactly(_HEAD.size))
        if call_id != 0 or size > 256:
            return False
        answer = msgpack.unpackb(await reader.readexactly(size))
        return isinstance(answer, bytes) and hmac.compare_digest(answer, proof(self.token, challenge))

    async def _call(self, writer: asyncio.StreamWriter, call_id: int, body: bytes) -> None:
        try:
            batches = decode_batches(body)
        except (TypeError, ValueError, msgpack.UnpackException):
            log.warning("ingest channel: a request frame did not decode; closing the connection")
            writer.close()
            return
        try:
            results: Sequence[Ack | DashError] = await self.handler(batches)
        except DashError as exc:
            results = [exc] * len(batches)
        except Exception as exc:  # a bug behind the handler: every batch gets it
            log.exception("ingest channel: the call failed")
            results = [InternalError(f"{type(exc).__name__}: {exc}"[:500])] * len(batches)
        reply = _encode_results(results)
        if writer.is_closing():
            return
        writer.write(_HEAD.pack(len(reply), call_id) + reply)
        try:
            await writer.drain()
        except ConnectionError:
            pass


# -- client ------------------------------------------------------------------------------

# A peer that vanishes without a reset (its node lost, a cable pulled) must still fail the
# calls waiting on it, as Ray fails a call to a dead actor: probes after 10 s idle, every 5 s,
# three missed ends it; data unacknowledged for 30 s ends it too.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES, USER_TIMEOUT_MS = 10, 5, 3, 30_000


def _keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
                          ("TCP_KEEPCNT", KEEPALIVE_PROBES), ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS)):
        if hasattr(socket, option):  # Linux has all four; elsewhere the system's defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


async def _read_challenge(reader: asyncio.StreamReader) -> bytes:
    size, call_id = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if call_id != 0 or size > 256:
        raise ValueError("not a challenge")
    challenge = msgpack.unpackb(await reader.readexactly(size))
    if not isinstance(challenge, bytes):
        raise ValueError("not a challenge")
    return challenge


class ChannelClient:
    """One connection to a pipeline's `ChannelServer`, opened on the first call; once it
    breaks, every call fails with `ChannelClosed` (make a new client from a fresh endpoint)."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout_s: float = 5.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout_s = connect_timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._pending: dict[int, asyncio.Future[list[Ack | DashError]]] = {}
        self._next_id = 1
        self.closed = False

    async def call(self, batches: Sequence[RawBatch]) -> list[Ack | DashError]:
        if self._writer is None:
            await self._connect()
        if self.closed or self._writer is None:
            raise ChannelClosed(f"the connection to {self.endpoint.host}:{self.endpoint.port} is closed")
        call_id = self._next_id
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        body = encode_batches(batches)
        future: asyncio.Future[list[Ack | DashError]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._writer.write(_HEAD.pack(len(body), call_id) + body)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            self._broken(exc)
        return await future

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None or self.closed:
                return
            try:
                async with timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
            except (OSError, asyncio.TimeoutError) as exc:
                self.closed = True
                raise ChannelClosed(f"cannot connect to {self.endpoint.host}:{self.endpoint.port}: {exc}") from exc
            _keepalive(writer)
            try:
                async with timeout(self.connect_timeout_s):
                    challenge = await _read_challenge(reader)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                    msgpack.UnpackException) as exc:
                self.closed = True
                writer.close()
                raise ChannelClosed(f"{self.endpoint.host}:{self.endpoint.port} sent no challenge: "
                                    f"{type(exc).__name__}") from exc
            answer = msgpack.packb(proof(self.endpoint.token, challenge))
            writer.write(_HEAD.pack(len(answer), 0) + answer)
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size, call_id = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                body = await reader.readexactly(size)
                future = self._pending.pop(call_id, None)
                if future is not None and not future.done():
                    future.set_result(_decode_results(body))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self._broken(exc)
        except Exception as exc:  # a reply that does not decode: the stream is lost
            log.exception("ingest channel: a reply did not decode")
            self._broken(exc)

    def _broken(self, exc: BaseException) -> None:
        self.closed = True
        error = ChannelClosed(f"the connection to {self.endpoint.host}:{self.endpoint.port} broke: "
                              f"{type(exc).__name__}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        """Close the connection now; calls in flight fail with `ChannelClosed`."""
        self._broken(ChannelClosed("closed"))
        if self._reader_task is not None:
            self._reader_task.cancel()

    async def close(self) -> None:
        self.abort()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)
