"""A state machine over the file log with tiny segments (so appends roll and trims delete):
appends, trims (some racing appends), crashes (some leaving a torn or garbage tail) and
reopens. After every reopen: each acknowledged entry above the highest trim comes back
exactly once, in order, and nothing comes back that was never appended."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from dash_ray.log.file import WriteAheadLog
from dash_ray.log.segments import encode
from tests.dash_ray.log.conftest import abandon

SEGMENT_BYTES = 256  # a frame is 20 bytes plus its data: a few frames to a segment
sizes = st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=8)
tails = st.one_of(
    st.none(),
    st.integers(min_value=1, max_value=60).map(lambda n: ("torn", n)),  # a frame cut short
    st.binary(min_size=1, max_size=40).map(lambda b: ("garbage", b)),
)


class FileLogStates(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = Path(tempfile.mkdtemp(prefix="wal-states-"))
        self.loop = asyncio.new_event_loop()
        self.appended: dict[int, bytes] = {}  # every entry ever handed to append
        # Keys whose append resolved (or that a reopen returned). Only ever grows, so that what
        # the rules draw never depends on thread timing (hypothesis needs that).
        self.acked: list[int] = []
        self.watermark = -1  # the highest key trimmed through
        self.next_key = 1
        self.wal = self._open()

    def _open(self) -> WriteAheadLog:
        wal = WriteAheadLog(self.path, segment_bytes=SEGMENT_BYTES)
        self.recovered = wal.open()
        return wal

    def _entries(self, lengths: list[int]) -> list[tuple[int, bytes]]:
        out = []
        for n in lengths:
            key, self.next_key = self.next_key, self.next_key + 1
            data = b"%d|" % key + b"x" * n
            self.appended[key] = data
            out.append((key, data))
        return out

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _append_all(self, entries):
        await asyncio.gather(*(self.wal.append(k, d) for k, d in entries))

    @rule(lengths=sizes)
    def append(self, lengths):
        entries = self._entries(lengths)
        self._run(self._append_all(entries))
        self.acked += [k for k, _ in entries]

    @precondition(lambda self: self.acked)
    @rule(pick=st.integers(min_value=0, max_value=2**16), racing=st.lists(st.integers(0, 120), max_size=6))
    def trim(self, pick, racing):
        key = self.acked[-1 - pick % len(self.acked)]
        entries = self._entries(racing)

        async def both():
            await asyncio.gather(self.wal.trim(key), self._append_all(entries))

        self._run(both())
        self.acked += [k for k, _ in entries]
        self.watermark = max(self.watermark, key)

    @rule(written=st.lists(st.integers(0, 120), max_size=4), queued=st.lists(st.integers(0, 120), max_size=4),
          tail=tails)
    def crash(self, written, queued, tail):
        # `written`: durable, but the crash came before anyone saw the acknowledgement.
        # `queued`: handed over and never awaited; each may or may not reach the disk.
        durable = self._entries(written)
        self._run(self._append_all(durable))
        entries = self._entries(queued)

        async def queue():
            for key, data in entries:
                self.wal.append(key, data)

        self._run(queue())
        abandon(self.wal)
        if tail is not None:
            kind, what = tail
            last = sorted(self.path.glob("*.wal"))[-1]
            if kind == "torn":
                frame = encode(self.next_key, b"never acknowledged" * 3)
                what = frame[: min(what, len(frame) - 1)]
            with open(last, "ab") as f:
                f.write(what)
        self.wal = self._open()
        self._check()
        self.acked += [k for k, _ in durable]

    @rule()
    def reopen(self):
        self._run(self.wal.close())
        self.wal = self._open()
        self._check()

    def _check(self) -> None:
        keys = [e.key for e in self.recovered]
        assert keys == sorted(set(keys)), f"out of order or repeated: {keys}"
        for entry in self.recovered:
            assert self.appended.get(entry.key) == entry.data, f"never appended: {entry}"
        wanted = [k for k in self.acked if k > self.watermark]
        missing = sorted(set(wanted) - set(keys))
        assert not missing, f"acknowledged entries lost: {missing} (trimmed through {self.watermark})"

    def teardown(self) -> None:
        try:
            self._run(self.wal.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.path, ignore_errors=True)


FileLogStates.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestFileLogStates = FileLogStates.TestCase
