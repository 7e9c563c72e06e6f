"""The sink process: where the sinks of the pipelines of one process deliver, each a
`DeliverySink` (`delivery.py`) on this process's event loop, fed over a socket by the
pipelines' process (`sink_process.py`, which starts this one with
`python -m dash_ray.pipeline.sink_worker --fd N`).

What it hears (`sink_wire.py` frames, in order, each naming its pipeline):
- `open`: the pipeline's spec, state folder, lake and secrets: its sinks are made.
- `start`: `stored` (what the lake holds) and `through` (what was offered before this process
  started and did not reach it: read back from the lake once stored); answered with the sinks'
  status once they run.
- `batch`: a mapped batch (Arrow IPC body), with the pipeline's stored seq.
- `lake`: a batch the other side did not send (its buffer to here was full): read it back.
- `stored`: the pipeline's stored seq moved.
- `redeliver` (answered with the count) and `close` (answered once the sinks closed, their
  cursors saved).
What it says: the answers (`reply` with the request's `rid`), and `status` of a pipeline's
sinks whenever they changed (at most every `_STATUS_EVERY_S`).

It runs at a lower CPU priority (`nice`, `DASH_SINK_NICE`, 5): delivery is behind ingest, never
before it. It ends when its socket ends: the pipelines' process closed it, or died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dash_ray.lake_roots import pipeline_lake
from dash_ray.pipeline.delivery import DeliverySink
from dash_ray.pipeline.sink_wire import read_frame, table_of, write_frame
from dash_ray.process_logging import setup_logging
from dash_ray.sinks.base import MappedBatch
from dash_ray.sinks.select import mapped_types
from dash_ray.spec import parse_spec

__all__ = ["SinkWorker", "main"]

log = logging.getLogger(__name__)

_STATUS_EVERY_S = 0.1


@dataclass
class _Pipeline:
    sinks: list[DeliverySink]
    stored: int = 0
    sent_version: tuple[Any, ...] = ()
    closing: bool = False
    pending: set[asyncio.Task[Any]] = field(default_factory=set)  # redeliver and close, until done

    def version(self) -> tuple[Any, ...]:
        """What moves when a sink's status may have: its changes, and its breaker's state, which
        time moves too (open to half-open) with nothing else happening."""
        return tuple((sink.version, sink.breaker.state) for sink in self.sinks)


class SinkWorker:
    """The pipelines' sinks in this process, driven by `handle(header, body)`."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.pipelines: dict[str, _Pipeline] = {}

    async def handle(self, header: dict[str, Any], body: bytes) -> None:
        op, pid = header["op"], header["pipeline"]
        if op == "open":
            self._open(pid, header)
            return
        pipeline = self.pipelines.get(pid)
        if pipeline is None:
            log.warning("sink process: %r for pipeline %s, which is not open", op, pid)
            return
        pipeline.stored = max(pipeline.stored, int(header.get("stored", 0)))
        if op == "batch":
            batch = MappedBatch(pid, header["first"], header["last"], table_of(body))
            for sink in pipeline.sinks:
                sink.offer(batch)
        elif op == "lake":
            for sink in pipeline.sinks:
                sink.read_back(header["through"])
        elif op == "start":
            for sink in pipeline.sinks:
                sink.start(pipeline.stored, through=header["through"])
            self._reply(header, self._status(pid, pipeline))
        elif op == "redeliver":
            # Not awaited here: the frames after it go on being read meanwhile.
            self._later(pipeline, header, self._redeliver(pipeline, header["sink"]))
        elif op == "close":
            pipeline.closing = True
            self._later(pipeline, header, self._close(pid, pipeline))
        elif op != "stored":
            log.warning("sink process: unknown op %r", op)

    def _open(self, pid: str, header: dict[str, Any]) -> None:
        spec = parse_spec(header["spec"])
        lake = pipeline_lake(spec, lake_url=header["lake_url"], lake_options=header.get("lake_options"))
        types = mapped_types(spec)
        json_columns = frozenset(name for name, type_ in types.items() if type_ == "json")
        pipeline = _Pipeline(sinks=[])
        folder = Path(header["folder"])
        for sink_spec in spec.sinks:
            pipeline.sinks.append(DeliverySink(
                pid, sink_spec, folder=folder / sink_spec.name, lake=lake, types=types, json_columns=json_columns,
                stored_seq=lambda: pipeline.stored, secrets=header.get("secrets") or {},
                max_queue_records=header["queue_records"], inline_db=True))
        self.pipelines[pid] = pipeline

    def _later(self, pipeline: _Pipeline, header: dict[str, Any], work: Any) -> None:
        async def run() -> None:
            try:
                self._reply(header, await work)
            except Exception as exc:
                log.exception("sink process: %s of pipeline %s failed", header["op"], header["pipeline"])
                self._reply(header, None, error=f"{type(exc).__name__}: {exc}")
        task = asyncio.get_running_loop().create_task(run())
        pipeline.pending.add(task)
        task.add_done_callback(pipeline.pending.discard)

    async def _redeliver(self, pipeline: _Pipeline, name: str) -> int:
        for sink in pipeline.sinks:
            if sink.name == name:
                return await sink.redeliver()
        raise KeyError(name)

    async def _close(self, pid: str, pipeline: _Pipeline) -> None:
        for sink in pipeline.sinks:
            try:
                await sink.close()
            except Exception:  # close the others all the same
                log.exception("sink %s of %s failed to close", sink.name, pid)
        self._send_status(pid, pipeline)
        if self.pipelines.get(pid) is pipeline:
            del self.pipelines[pid]

    def _reply(self, header: dict[str, Any], result: Any, *, error: str | None = None) -> None:
        """Answer a request; a frame without `rid` (a `start` sent to a new sink process for
        sinks that ran in the one before) asks for no answer."""
        if "rid" not in header:
            if isinstance(result, dict) and result.get("op") == "status":
                write_frame(self._writer, result)
            return
        write_frame(self._writer, {"op": "reply", "rid": header["rid"], "result": result, "error": error})

    @staticmethod
    def _status(pid: str, pipeline: _Pipeline) -> dict[str, Any]:
        pipeline.sent_version = pipeline.version()
        return {"op": "status", "pipeline": pid, "sinks": [s.status() for s in pipeline.sinks],
                "deliveries": {s.name: s.deliveries() for s in pipeline.sinks}}

    def _send_status(self, pid: str, pipeline: _Pipeline) -> None:
        write_frame(self._writer, self._status(pid, pipeline))

    async def report(self) -> None:
        """Send the status of every pipeline whose sinks changed, every `_STATUS_EVERY_S`."""
        while True:
            await asyncio.sleep(_STATUS_EVERY_S)
            for pid, pipeline in list(self.pipelines.items()):
                if not pipeline.closing and pipeline.version() != pipeline.sent_version:
                    self._send_status(pid, pipeline)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def close(self) -> None:
        """Close every sink (the other side is gone): cursors saved, deliveries in flight ended."""
        for pid, pipeline in list(self.pipelines.items()):
            if not pipeline.closing:
                pipeline.closing = True
                await self._close(pid, pipeline)
        for pipeline in list(self.pipelines.values()):
            for task in list(pipeline.pending):
                with contextlib.suppress(Exception):
                    await task


async def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    worker = SinkWorker(writer)
    reporting = asyncio.get_running_loop().create_task(worker.report())
    try:
        while (frame := await read_frame(reader)) is not None:
            try:
                await worker.handle(*frame)
            except Exception:  # one frame that cannot be done never ends the other pipelines' sinks
                log.exception("sink process: a %r frame failed", frame[0].get("op"))
    except (ConnectionError, ValueError) as exc:
        log.warning("sink process: the pipelines' process is gone (%s)", exc)
    finally:
        reporting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporting
        await worker.close()
        writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dash_ray.pipeline.sink_worker")
    parser.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    parser.add_argument("--nice", type=int, default=0, help="added to this process's niceness")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    args = parser.parse_args(argv)
    setup_logging(args.log_format)
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    asyncio.run(serve(args.fd))
    # Every sink is closed and its state saved: skip the interpreter's teardown (most of the
    # time a pipeline's stop waits for this process, a tenth of a second and more).
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
