"""The sink process (`dash_ray.pipeline.sink_process`, `sink_worker.py`): one per event loop
of the pipelines' process, at a lower CPU priority, started again when it dies without losing
a selected record, and gone when the pipelines' process is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

from dash_ray.pipeline.sink_process import SinkProcess
from dash_ray.settings import PipelineSettings
from tests.dash_ray.pipeline.sink_receivers import Receiver
from tests.dash_ray.pipeline.test_delivery import readings, seqs_of, spec, start
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[3]


def running(pid: int) -> bool:
    """A process `pid` exists and has not ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_sinks_run_in_a_process_of_their_own_that_ends_with_the_last_pipeline(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    hook = {"name": "hook", "kind": "webhook", "url": receiver.url, "batch": {"max_wait": 0.05}}
    first = await start(tmp_path, spec([hook], "first"))
    second = await start(tmp_path, spec([hook], "second"))
    try:
        assert first.sinks is not None and second.sinks is not None
        process = SinkProcess.of_loop()
        child = process.pid
        assert child is not None and child != os.getpid()  # one for both pipelines of this loop
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        # Behind ingest (DASH_SINK_NICE) for CPU.
        assert os.getpriority(os.PRIO_PROCESS, child) == min(ours + PipelineSettings.sink_nice, 19)
        await first.core.ingest([readings([40, 41])])
        await second.core.ingest([readings([50])])
        await until(lambda: sorted(seqs_of(receiver)) == [1, 1, 2], timeout=20)
        await first.core.ingest([readings([42])])
        await until(lambda: sorted(seqs_of(receiver)) == [1, 1, 2, 3], timeout=20)
        # The receiver has the POST before the sink process has read its answer: wait for that too.
        await until(lambda: first.sink_states()[0]["delivered_records"] == 3, timeout=20, what="the count")
        assert first.health()["counters"]["sink_deliveries"]["hook"]["delivered"] >= 2
        await first.stop()
        assert running(child), "the second pipeline's sinks still run in it"
        await second.core.ingest([readings([51])])
        await until(lambda: sorted(seqs_of(receiver))[-1] == 3 and len(seqs_of(receiver)) == 5, timeout=20)
    finally:
        await first.stop()
        await second.stop()
        await receiver.stop()
    assert not running(child)


async def test_a_killed_sink_process_is_started_again_and_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL of the sink process while records flow: another starts, and every selected
    record is delivered (what the dead one had taken from its durable state, what it never
    read from the lake), duplicates only with the same webhook-id."""
    receiver = await Receiver().start()
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url,
                                        "when": "temp_c >= 0", "batch": {"max_records": 7, "max_wait": 0.02}}]))
    try:
        assert host.sinks is not None
        process = SinkProcess.of_loop()
        for round_ in range(3):
            child = process.pid
            assert child is not None
            for i in range(4):
                await host.core.ingest([readings([float(round_ * 100 + i * 10 + j) for j in range(10)])])
            os.kill(child, signal.SIGKILL)
            await host.core.ingest([readings([-1.0] * 5)])  # not selected: the cursor moves past them
            await until(lambda: process.pid not in (None, child), timeout=20, what="another sink process")
        await host.core.ingest([readings([999.0])])
        await host.core.flush()
        expected = [seq for seq in range(1, 3 * 45 + 2) if seq % 45 not in range(41, 45) and seq % 45 != 0]
        await until(lambda: sorted(set(seqs_of(receiver))) == expected, timeout=60, what="every selected record")
        assert process.restarts >= 3
        bodies: dict[str, bytes] = {}
        for headers, body in receiver.delivered():
            assert bodies.setdefault(headers["webhook-id"], body) == body  # a duplicate is the same delivery
        ids_of_seq: dict[int, set[str]] = {}
        for headers, body in receiver.delivered():
            for record in orjson.loads(body)["records"]:
                ids_of_seq.setdefault(record["seq"], set()).add(headers["webhook-id"])
        assert all(len(ids) == 1 for ids in ids_of_seq.values()), "a record went out under two ids"
    finally:
        await host.stop()
        await receiver.stop()



def test_the_sink_process_ends_when_the_pipelines_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the pipelines' process (as of a Ray worker): its sink process sees its
    socket end, closes its sinks and exits; nothing is left behind."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from dash_ray.pipeline.sink_process import SinkProcess
        from tests.dash_ray.pipeline.test_delivery import spec, start
        from pathlib import Path

        async def main():
            host = await start(Path({str(tmp_path)!r}), spec([{{"name": "hook", "kind": "webhook",
                                                                 "url": "http://127.0.0.1:9/"}}]))
            print(SinkProcess.of_loop().pid, flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child), "the sink process outlived the pipelines' process"
