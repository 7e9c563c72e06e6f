"""Fault-injection tests for the file log: trim racing the writer, damage versus a torn tail,
directory fsyncs. Each one failed on the log as it was before its fix."""

import asyncio
import os
import threading

import pytest

from dash_ray.errors import WalCorruptError
from dash_ray.log.file import WriteAheadLog
from tests.waiting import until


def _segments(path):
    return sorted(path.glob("*.wal"))


async def _reopen(path, **options):
    wal = WriteAheadLog(path, **options)
    try:
        return [(e.key, e.data) for e in wal.open()]
    finally:
        await wal.close()


# -- trim and the writer thread --------------------------------------------------------------


async def test_trim_between_a_group_taken_and_written_keeps_the_group(tmp_path, writer_gate):
    # Other threads of the process (lake writes, the idempotency index) open and close files
    # all the time; `hole` and `victim` play them. If trim swaps the segment fd while the
    # writer is about to use the old number, that number can belong to `victim` by then.
    hole = os.open(os.devnull, os.O_RDONLY)
    wal = WriteAheadLog(tmp_path / "wal")
    wal.open()
    await wal.append(1, b"one")
    writer_gate.arm("write")
    second = wal.append(2, b"two")
    await writer_gate.reached()  # the writer took [2], released the lock, sits in os.write
    os.close(hole)
    trim = asyncio.ensure_future(wal.trim(1))
    await until(lambda: wal._trim_waiters, what="the trim to be asked of the writer")
    victim = os.open(tmp_path / "victim", os.O_WRONLY | os.O_CREAT, 0o600)
    writer_gate.release()
    await second  # acknowledged: it must be in the log from now on
    await trim
    os.close(victim)
    await wal.close()
    assert (2, b"two") in await _reopen(tmp_path / "wal")
    assert (tmp_path / "victim").stat().st_size == 0, "an acknowledged frame went into another file"


async def test_only_the_writer_thread_rolls_and_deletes_segments(tmp_path, monkeypatch):
    seen: list[tuple[str, str]] = []
    real_open, real_unlink = os.open, os.unlink

    def recording_open(path, flags, *args, **kwargs):
        if str(path).endswith(".wal") and flags & os.O_CREAT:
            seen.append(("create", threading.current_thread().name))
        return real_open(path, flags, *args, **kwargs)

    def recording_unlink(path, *args, **kwargs):
        seen.append(("unlink", threading.current_thread().name))
        return real_unlink(path, *args, **kwargs)

    wal = WriteAheadLog(tmp_path, segment_bytes=300)
    wal.open()
    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "unlink", recording_unlink)
    for key in range(1, 21):
        await wal.append(key, b"k" * 60)
    await wal.trim(10)
    await wal.trim(20)  # everything: rolls the active segment too
    await wal.close()
    assert {kind for kind, _ in seen} == {"create", "unlink"}
    off_thread = [(kind, thread) for kind, thread in seen if not thread.startswith("wal:")]
    assert not off_thread, f"segment files created or removed outside the writer: {off_thread}"


async def test_trims_wait_for_the_writer_and_the_highest_one_wins(tmp_path, writer_gate):
    wal = WriteAheadLog(tmp_path, segment_bytes=300)
    wal.open()
    for key in range(1, 21):
        await wal.append(key, b"t" * 60)
    writer_gate.arm("fdatasync")
    pending = wal.append(21, b"t" * 60)
    await writer_gate.reached()
    trims = [asyncio.ensure_future(wal.trim(k)) for k in (5, 15, 9)]
    more = [wal.append(k, b"t" * 60) for k in (22, 23)]  # appends go on while trims wait
    await asyncio.sleep(0.05)  # not a synchronisation: the loop is free, and no trim may finish meanwhile
    assert not any(t.done() for t in trims)
    writer_gate.release()
    await asyncio.gather(pending, *trims, *more)
    await wal.close()
    keys = [k for k, _ in await _reopen(tmp_path, segment_bytes=300)]
    assert keys == list(range(keys[0], 24)) and 6 <= keys[0] <= 16, keys


async def test_trim_after_close_or_failure_does_nothing(tmp_path):
    wal = WriteAheadLog(tmp_path)
    await wal.trim(3)  # not open yet
    wal.open()
    await wal.append(1, b"a")
    await wal.close()
    await wal.trim(3)
    assert await _reopen(tmp_path) == [(1, b"a")]


async def test_a_group_spanning_a_roll_fails_only_what_was_not_synced(tmp_path, writer_gate, failing_writes):
    wal = WriteAheadLog(tmp_path, segment_bytes=300)  # 80-byte frames: three to a segment
    wal.open()
    await wal.append(1, b"g" * 60)
    writer_gate.arm("fdatasync")
    second = wal.append(2, b"g" * 60)
    await writer_gate.reached()
    group = [wal.append(k, b"g" * 60) for k in (3, 4, 5, 6)]  # one group: 3 fits, then a roll
    failing_writes.arm(after=1)  # the run before the roll is written; the one after it fails
    writer_gate.release()
    await second
    results = await asyncio.gather(*group, return_exceptions=True)
    ok = {k for k, r in zip((3, 4, 5, 6), results, strict=True) if r is None}
    failed = {k for k, r in zip((3, 4, 5, 6), results, strict=True) if isinstance(r, OSError)}
    await wal.close()
    keys = {k for k, _ in await _reopen(tmp_path, segment_bytes=300)}
    assert not failed & keys, f"appends that failed were recovered: {sorted(failed & keys)}"
    assert ok <= keys and {1, 2} <= keys
    assert ok == {3} and failed == {4, 5, 6}, "what was synced before the roll is acknowledged"


# -- damage versus a torn tail ---------------------------------------------------------------


def _frame_offsets(data):
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 20 + int.from_bytes(data[offset + 4:offset + 8], "little")
    return offsets


@pytest.mark.parametrize("where", ["data", "magic", "length", "crc"])
async def test_damage_in_the_last_segment_before_valid_frames_is_refused(tmp_path, where):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for key in range(1, 6):
        await wal.append(key, b"d%d" % key * 10)
    await wal.close()
    (segment,) = _segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = _frame_offsets(data)[1]
    data[second + {"magic": 1, "length": 5, "crc": 17, "data": 25}[where]] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError) as caught:
        WriteAheadLog(tmp_path).open()
    message = str(caught.value)
    assert segment.name in message and f"byte {second}" in message, message
    assert "key 3" in message, message  # what follows the damage
    assert segment.read_bytes() == bytes(data), "a refused open must leave the file as it was"


async def test_a_damaged_last_frame_is_cut_as_a_torn_tail(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for key in range(1, 4):
        await wal.append(key, b"e" * 30)
    await wal.close()
    (segment,) = _segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[_frame_offsets(data)[2] + 25] ^= 0x01  # nothing valid follows: it cannot be told from a torn write
    segment.write_bytes(bytes(data))
    assert [k for k, _ in await _reopen(tmp_path)] == [1, 2]


# -- directory fsyncs ------------------------------------------------------------------------


def test_open_fsyncs_the_parent_of_every_directory_it_creates(tmp_path, dir_syncs):
    base = os.path.realpath(tmp_path)
    wal = WriteAheadLog(tmp_path / "a" / "b" / "wal")
    wal.open()
    asyncio.run(wal.close())
    wanted = {base, f"{base}/a", f"{base}/a/b", f"{base}/a/b/wal"}
    assert wanted <= dir_syncs.synced, f"not fsync'd: {sorted(wanted - dir_syncs.synced)}"


async def test_trim_fsyncs_the_directory_after_its_unlinks(tmp_path, dir_syncs):
    wal = WriteAheadLog(tmp_path, segment_bytes=300)
    wal.open()
    for key in range(1, 21):
        await wal.append(key, b"u" * 60)
    dir_syncs.events.clear()
    await wal.trim(20)
    await wal.close()
    kinds = [kind for kind, path in dir_syncs.events if path.endswith(".wal") or kind == "fsync"]
    assert "unlink" in kinds and kinds[-1] == "fsync", dir_syncs.events
    assert dir_syncs.events[-1] == ("fsync", os.path.realpath(tmp_path))
