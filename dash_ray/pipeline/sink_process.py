"""Where a pipeline's sinks run: in a process of their own (`sink_worker.py`), one per event
loop of the pipelines' process (a dedicated pipeline actor: one; a shared host actor: one for
all its pipelines), started with the first pipeline that has sinks and ended with the last.

Why a process: ingest, the mapping and the flushes run on the pipeline's event loop and the
GIL of its process. The sinks' work (`when`, JSON, SQLite, templates, signing, HTTP) grows with
the records they select; in the pipeline's process, even on a thread of their own, it took
10 to 50% of ingest's throughput (`benchmarks/sinks.py`). Here it costs the pipeline's loop
one Arrow IPC frame per `_FRAME_EVERY_S` of mapped batches (their buffers copied once into a
socket), and the sink process runs at a lower CPU priority, so on a busy machine delivery
waits, not ingest.

Nothing of a sink's guarantees changes, since they live in its durable state, not in either
process: a frame the sink process never read (it died, or its socket's buffer was full: the
frame is not sent then, never blocking ingest) is read back from the lake once stored, as a
sink's own queue overflow is. When the sink process dies the pipelines' process starts another
(after `_RESTART_S`) and opens every pipeline's sinks in it again; when the pipelines' process
dies, the sink process sees its socket end and closes.

`PipelineSinks` is one pipeline's part: the hook's `Sink` (`offer`, `close`), `start`, its
sinks' last status (pushed by the sink process when it changes) and `redeliver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.pipeline.sink_wire import read_frame, table_body, write_frame
from dash_ray.sinks.base import MappedBatch
from dash_ray.timeouts import timeout

__all__ = ["PipelineSinks", "SinkProcess", "SinkSetup"]

log = logging.getLogger(__name__)

_MAX_BUFFER_BYTES = 16 * 2**20  # frames waiting for the sink process to read them, at most
# Mapped batches go out together, at most this long after the first (and at once past
# `_FRAME_RECORDS`): a frame's cost, here and in the sink process, is mostly per frame.
_FRAME_EVERY_S = 0.05
_FRAME_RECORDS = 20_000
_RESTART_S = 1.0
_STORED_EVERY_S = 0.2
_ANSWER_S = 60.0
_STOP_S = 15.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class SinkSetup:
    """What the sink process needs to make one pipeline's sinks."""

    spec: dict[str, Any]
    folder: str  # the sinks' state: <folder>/<sink name>/
    lake_url: str
    lake_options: dict[str, Any] | None
    secrets: dict[str, str]
    queue_records: int  # `PipelineSettings.sink_queue_records`


class PipelineSinks:
    """One pipeline's sinks, as its process sees them (made by `SinkProcess.open`)."""

    name = "sinks"

    def __init__(self, process: SinkProcess, pipeline_id: str, setup: SinkSetup, names: list[tuple[str, str]],
                 stored_seq: Callable[[], int]) -> None:
        self.pipeline_id = pipeline_id
        self.setup = setup
        self.stored_seq = stored_seq
        self.offered = 0  # the last seq offered: what a new sink process reads back from the lake
        self.waiting: list[MappedBatch] = []  # offered, not yet sent (`SinkProcess.queue_batch`)
        self.waiting_rows = 0
        self.sent_stored = -1
        self.started = False
        self._process = process
        self._closed = False
        self._status: list[dict[str, Any]] = [
            {"name": name, "kind": kind, "state": "starting"} for name, kind in names]
        self._deliveries: dict[str, dict[str, int]] = {}

    def offer(self, batch: MappedBatch) -> None:
        if self._closed:
            return
        self.offered = max(self.offered, batch.last_seq)
        self._process.queue_batch(self, batch)

    async def start(self) -> None:
        """Start the sinks (what the lake stored after their cursors first); returns once they
        run and their status is known."""
        self.started = True
        await self._process.start(self)

    def status(self) -> list[dict[str, Any]]:
        return self._status

    def deliveries(self) -> dict[str, dict[str, int]]:
        return self._deliveries

    def _note(self, frame: dict[str, Any]) -> None:
        self._status = frame["sinks"]
        self._deliveries = frame["deliveries"]

    async def redeliver(self, name: str) -> int:
        if name not in {s["name"] for s in self._status}:
            raise NotFoundError(f"pipeline {self.pipeline_id} has no sink {name[:80]!r}", where="sink")
        return int(await self._process.ask(self, {"op": "redeliver", "sink": name}))

    async def close(self) -> None:
        """Close the sinks in the sink process (their cursors saved); idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._process.close(self)


class SinkProcess:
    """The sink process of one event loop: `await SinkProcess.of_loop().open(...)` per pipeline."""

    _of_loop: dict[asyncio.AbstractEventLoop, SinkProcess] = {}

    def __init__(self, *, nice: int, log_format: str) -> None:
        self._nice = nice
        self._log_format = log_format
        self._pipelines: dict[str, PipelineSinks] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._answers: dict[int, asyncio.Future[Any]] = {}
        self._rids = itertools.count(1)
        self._flushing: asyncio.TimerHandle | None = None
        self.restarts = 0
        self.skipped_batches = 0

    @classmethod
    def of_loop(cls, *, nice: int = 5, log_format: str = "text") -> SinkProcess:
        """This event loop's sink process (started by the first `open`)."""
        loop = asyncio.get_running_loop()
        process = cls._of_loop.get(loop)
        if process is None:
            process = cls._of_loop[loop] = cls(nice=nice, log_format=log_format)
        return process

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.returncode is None else None

    async def open(self, pipeline_id: str, setup: SinkSetup, stored_seq: Callable[[], int]) -> PipelineSinks:
        """Make a pipeline's sinks in the sink process (started now if it is not running)."""
        names = [(s["name"], s["kind"]) for s in setup.spec.get("sinks") or []]
        sinks = PipelineSinks(self, pipeline_id, setup, names, stored_seq)
        if pipeline_id in self._pipelines:
            raise RuntimeError(f"pipeline {pipeline_id}'s sinks are open already")
        self._pipelines[pipeline_id] = sinks
        if self._running is None:
            self._ready.clear()
            self._running = asyncio.get_running_loop().create_task(self._run(), name="sink-process")
        elif self._writer is not None:
            self._open_frame(sinks)
        return sinks

    # -- the child -------------------------------------------------------------------------

    async def _run(self) -> None:
        """Run the sink process while pipelines are open, starting it again when it dies."""
        while self._pipelines:
            try:
                await self._converse()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the sink process failed")
            if not self._pipelines:
                break
            self.restarts += 1
            log.warning("the sink process ended; starting another in %.0f s", _RESTART_S)
            await asyncio.sleep(_RESTART_S)
        self._running = None

    async def _converse(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
            self._child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dash_ray.pipeline.sink_worker", "--fd", str(theirs.fileno()),
                "--nice", str(self._nice), "--log-format", self._log_format,
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=2**20)
        writer.transport.set_write_buffer_limits(high=_MAX_BUFFER_BYTES)
        self._writer = writer
        for sinks in list(self._pipelines.values()):
            sinks.waiting, sinks.waiting_rows = [], 0  # read back from the lake: `offered`
            self._open_frame(sinks)
            if sinks.started:  # a process before this one had them running: start them again
                self._send(sinks, {"op": "start", "through": sinks.offered})
        self._ready.set()
        storing = asyncio.get_running_loop().create_task(self._send_stored())
        try:
            while (frame := await read_frame(reader)) is not None:
                self._heard(*frame)
        finally:
            storing.cancel()
            if self._writer is writer:
                self._writer = None
            self._ready.clear()
            writer.close()
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(UnavailableError("the sink process ended", retry_after=_RESTART_S))
            self._answers.clear()
            child, self._child = self._child, None
            if child is not None and child.returncode is None:
                with contextlib.suppress(TimeoutError):
                    async with timeout(_STOP_S):
                        await child.wait()
                if child.returncode is None:
                    child.kill()
                    await child.wait()

    def _heard(self, header: dict[str, Any], body: bytes) -> None:
        if header["op"] == "reply":
            answer = self._answers.pop(header["rid"], None)
            if answer is not None and not answer.done():
                if header.get("error"):
                    answer.set_exception(RuntimeError(header["error"]))
                else:
                    answer.set_result(header.get("result"))
        elif header["op"] == "status" and (sinks := self._pipelines.get(header["pipeline"])) is not None:
            sinks._note(header)

    async def _send_stored(self) -> None:
        """Tell the sink process where each pipeline's lake is (what it may read back)."""
        while True:
            await asyncio.sleep(_STORED_EVERY_S)
            for sinks in list(self._pipelines.values()):
                if sinks.stored_seq() != sinks.sent_stored:
                    self._send(sinks, {"op": "stored"})

    # -- frames ----------------------------------------------------------------------------

    def _open_frame(self, sinks: PipelineSinks) -> None:
        setup = sinks.setup
        self._send(sinks, {"op": "open", "spec": setup.spec, "folder": setup.folder, "lake_url": setup.lake_url,
                           "lake_options": setup.lake_options, "secrets": setup.secrets,
                           "queue_records": setup.queue_records})

    def _send(self, sinks: PipelineSinks, header: dict[str, Any], body: Any = b"") -> bool:
        """Write a frame about `sinks`, after the batches waiting to go before it."""
        if sinks.waiting:
            self._flush(sinks)
        return self._write(sinks, header, body)

    def _write(self, sinks: PipelineSinks, header: dict[str, Any], body: Any = b"") -> bool:
        if self._writer is None or self._writer.is_closing():
            return False
        sinks.sent_stored = header["stored"] = sinks.stored_seq()
        header["pipeline"] = sinks.pipeline_id
        write_frame(self._writer, header, body)
        return True

    def queue_batch(self, sinks: PipelineSinks, batch: MappedBatch) -> None:
        """Send a mapped batch soon (within `_FRAME_EVERY_S`, with those offered meanwhile),
        never blocking. While there is no sink process the batch is not kept: the next one
        reads it back from the lake (`PipelineSinks.offered`)."""
        if self._writer is None:
            return
        sinks.waiting.append(batch)
        sinks.waiting_rows += batch.rows.num_rows
        if sinks.waiting_rows >= _FRAME_RECORDS:
            self._flush(sinks)
        elif self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(_FRAME_EVERY_S, self._flush_all)

    def _flush_all(self) -> None:
        self._flushing = None
        for sinks in list(self._pipelines.values()):
            if sinks.waiting:
                self._flush(sinks)

    def _flush(self, sinks: PipelineSinks) -> None:
        """Send `sinks`' waiting batches as one frame; when the sink process is behind by
        `_MAX_BUFFER_BYTES`, tell it to read them back from the lake instead."""
        batches, sinks.waiting, sinks.waiting_rows = sinks.waiting, [], 0
        writer = self._writer
        if writer is None or not batches:
            return
        first, last = min(b.first_seq for b in batches), max(b.last_seq for b in batches)
        if writer.transport.get_write_buffer_size() >= _MAX_BUFFER_BYTES:
            self.skipped_batches += len(batches)
            self._write(sinks, {"op": "lake", "through": last})
            return
        try:
            rows = batches[0].rows if len(batches) == 1 else pa.concat_tables(
                [b.rows for b in batches], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # types that do not meet: one frame each
            for b in batches:
                self._write(sinks, {"op": "batch", "first": b.first_seq, "last": b.last_seq}, table_body(b.rows))
            return
        self._write(sinks, {"op": "batch", "first": first, "last": last}, table_body(rows))

    async def ask(self, sinks: PipelineSinks, header: dict[str, Any]) -> Any:
        """Send a request about `sinks`; its answer."""
        async with timeout(_ANSWER_S):
            await self._ready.wait()
        rid = next(self._rids)
        answer = self._answers[rid] = asyncio.get_running_loop().create_future()
        if not self._send(sinks, {**header, "rid": rid}):
            self._answers.pop(rid, None)
            raise UnavailableError("the sink process is not running", retry_after=_RESTART_S)
        async with timeout(_ANSWER_S):
            return await answer

    async def start(self, sinks: PipelineSinks) -> None:
        sinks._note(await self.ask(sinks, {"op": "start", "through": sinks.offered}))

    async def close(self, sinks: PipelineSinks) -> None:
        """Close one pipeline's sinks; the sink process ends with the last."""
        try:
            if self._writer is not None:
                await self.ask(sinks, {"op": "close"})
        except (UnavailableError, RuntimeError, TimeoutError) as exc:
            # The sink process is gone or failed: the sinks' state is on disk all the same.
            log.warning("pipeline %s: closing its sinks: %s", sinks.pipeline_id, exc)
        finally:
            if self._pipelines.get(sinks.pipeline_id) is sinks:
                del self._pipelines[sinks.pipeline_id]
        if not self._pipelines:
            await self._stop()

    async def _stop(self) -> None:
        """End the sink process (its socket closed: it closes and exits) and wait for it."""
        loop = asyncio.get_running_loop()
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if self._of_loop.get(loop) is self:
            del self._of_loop[loop]
        writer, self._writer = self._writer, None
        if writer is not None and not writer.is_closing():
            # Only our half: the sink process sees EOF, closes its sinks and answers the last
            # frames, which are still read here, before it exits.
            writer.write_eof()
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                async with timeout(_STOP_S + 5):
                    await asyncio.shield(running)
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
