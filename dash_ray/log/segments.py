"""The file log on disk: the frame format, segment files, recovering a folder of them (a torn
tail is cut, damage is refused) and creating folders so that they survive a power cut.

A segment `<n>.wal` is a run of frames:

    magic u32 | length u32 | key u64 | crc32(key, data) u32 | data

Only the last segment can end in a torn frame: a segment is synced before the next one is
created. A bad frame in the last segment is a torn tail only when no valid frame follows it
(valid magic, a length that fits, a matching CRC); if one does, the bytes after the damage
were written, and may have been acknowledged, so recovery refuses rather than cut them.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry

__all__ = ["Recovery", "Segment", "encode", "frames", "make_dirs", "recover", "segment_path", "sync_dir"]

log = logging.getLogger(__name__)

MAGIC = 0xDA5B_10C1
_MAGIC_BYTES = struct.pack("<I", MAGIC)
FRAME = struct.Struct("<IIQI")
_KEY = struct.Struct("<Q")
SUFFIX = ".wal"


@dataclass
class Segment:
    number: int
    path: Path
    size: int = 0
    max_key: int | None = None  # None: holds no entry


@dataclass
class Recovery:
    segments: list[Segment] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    truncated_bytes: int = 0


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}{SUFFIX}"


def _crc(key: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_KEY.pack(key)))


def encode(key: int, data: bytes) -> bytes:
    return FRAME.pack(MAGIC, len(data), key, _crc(key, data)) + data


def frames(buf: bytes, offset: int = 0) -> Iterator[tuple[int, Entry | None, str | None]]:
    """(offset, entry, problem) for each frame from `offset`; stops after the first problem."""
    end = len(buf)
    while offset < end:
        if end - offset < FRAME.size:
            yield offset, None, "incomplete frame header"
            return
        magic, length, key, crc = FRAME.unpack_from(buf, offset)
        if magic != MAGIC:
            yield offset, None, "bad magic"
            return
        start = offset + FRAME.size
        if start + length > end:
            yield offset, None, "frame runs past the end of the file"
            return
        data = bytes(buf[start:start + length])
        if _crc(key, data) != crc:
            yield offset, None, "checksum mismatch"
            return
        yield offset, Entry(key, data), None
        offset = start + length


def _valid_after(buf: bytes, start: int) -> tuple[int, list[Entry]] | None:
    """The first valid frame at or after `start`, with the unbroken run of valid frames it
    begins; None when there is none (what is there is a torn tail)."""
    at = buf.find(_MAGIC_BYTES, start)
    while at != -1:
        run = []
        for _, entry, problem in frames(buf, at):
            if problem is not None:
                break
            assert entry is not None
            run.append(entry)
        if run:
            return at, run
        at = buf.find(_MAGIC_BYTES, at + 1)
    return None


def _damage(path: Path, buf: bytes, offset: int, problem: str) -> WalCorruptError:
    found = _valid_after(buf, offset + 1)
    if found is None:
        follows = "nothing valid follows, but this is not the last segment"
    else:
        at, run = found
        follows = (f"{len(run)} valid frame(s) follow from byte {at} (key {run[0].key} to key "
                   f"{run[-1].key}), and cutting the file here would drop them")
    return WalCorruptError(
        f"write-ahead log {path}: {problem} at byte {offset}; {follows}. This is damage, not a torn "
        f"tail: restore the file, or truncate it at byte {offset} if losing what follows is acceptable")


def recover(directory: Path) -> Recovery:
    """Read every segment in `directory`, in order. Cuts a torn tail off the last segment (and
    syncs the cut); raises WalCorruptError for damage anywhere else, or for keys that go down.
    Changes nothing on disk when it raises."""
    paths = sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem))
    result = Recovery()
    last_key: int | None = None
    for i, path in enumerate(paths):
        segment = Segment(int(path.stem), path)
        buf = path.read_bytes()
        for offset, entry, problem in frames(buf):
            if problem is not None:
                if i != len(paths) - 1 or _valid_after(buf, offset + 1) is not None:
                    raise _damage(path, buf, offset, problem)
                dropped = len(buf) - offset
                log.warning("%s: cut %d byte(s) of torn tail (%s)", path, dropped, problem)
                result.truncated_bytes += dropped
                with open(path, "r+b") as f:
                    f.truncate(offset)
                    os.fsync(f.fileno())
                break
            assert entry is not None
            if last_key is not None and entry.key < last_key:
                raise WalCorruptError(f"write-ahead log {path}: key {entry.key} after {last_key} at byte {offset}")
            result.entries.append(entry)
            last_key = segment.max_key = entry.key
            segment.size = offset + FRAME.size + len(entry.data)
        result.segments.append(segment)
    return result


def sync_dir(path: Path) -> None:
    """fsync a directory, so the entries created or removed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path, *, sync: bool = True) -> None:
    """`mkdir -p`, then (when `sync`) fsync the parent of every directory it created, top down,
    so the new folders are on disk before anything written into them is acknowledged."""
    missing = []
    path = directory.absolute()
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    if sync:
        for created in reversed(missing):
            sync_dir(created.parent)
