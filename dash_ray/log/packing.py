"""How the JetStream log packs a group of entries into messages and reads them back.

A message is a run of frames `key u64 | flags u8 | length u32 | data`. Entries that fit share a
message; an entry larger than one is split across consecutive messages, each piece flagged
MORE (another piece follows) and/or CONTINUED (a piece came before).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry

__all__ = ["FRAME", "Message", "Unpacker", "pack", "trimmable"]

FRAME = struct.Struct("<QBI")
MORE, CONTINUED = 1, 2


@dataclass
class Message:
    payload: bytes
    ends: int  # entries whose last piece is in this message
    last_key: int
    open_end: bool  # its last piece continues in the next message
    size: int  # bytes of entry data in it


def pack(entries: list[tuple[int, bytes]], limit: int) -> list[Message]:
    """The messages, at most `limit` bytes each, that carry `entries` in order."""
    room = limit - FRAME.size
    out: list[Message] = []
    parts: list[bytes] = []
    used = ends = size = 0
    last_key = -1

    def flush(open_end: bool) -> None:
        nonlocal parts, used, ends, size
        out.append(Message(b"".join(parts), ends, last_key, open_end, size))
        parts, used, ends, size = [], 0, 0, 0

    for key, data in entries:
        if parts and used + FRAME.size + len(data) > limit:
            flush(False)
        pieces = [data[i:i + room] for i in range(0, len(data), room)] or [b""]
        for i, piece in enumerate(pieces):
            flags = (MORE if i < len(pieces) - 1 else 0) | (CONTINUED if i else 0)
            parts += [FRAME.pack(key, flags, len(piece)), piece]
            used += FRAME.size + len(piece)
            size += len(piece)
            last_key = key
            if flags & MORE:
                flush(True)
        ends += 1
    if parts:
        flush(False)
    return out


class Stored(Protocol):
    last_key: int
    open_end: bool


def trimmable(messages: Iterable[Stored], through_key: int) -> int:
    """How many of the leading `messages` (in stream order) a trim through `through_key` may
    remove: those whose entries all have key <= it, never the first part of an entry whose
    end is in a message that stays."""
    count = 0
    for i, message in enumerate(messages):
        if message.last_key > through_key:
            break
        if not message.open_end:
            count = i + 1
    return count


@dataclass
class Unpacker:
    """Entries back from messages read in stream order. A piece left open at the end of one
    owner's messages (`owner` changes, or the stream ends) was never acknowledged: it is
    dropped and counted. A leading CONTINUED piece in the first message read is what a trim
    left of an entry it removed: dropped too. Anything else out of place is damage."""

    where: str
    dropped_bytes: int = 0
    last_key: int = -1  # of the last piece read
    _partial: list[bytes] = field(default_factory=list)
    _partial_key: int = -1
    _owner: str | None = None
    _remnant: bool = True  # still at the start, where a trim may have left pieces

    def read(self, payload: bytes, *, owner: str, seq: int) -> list[Entry]:
        if self._partial and owner != self._owner:
            self._drop_partial()
        self._owner = owner
        entries: list[Entry] = []
        offset = 0
        while offset < len(payload):
            if len(payload) - offset < FRAME.size:
                raise self._damage(seq, "a frame header is cut short")
            key, flags, length = FRAME.unpack_from(payload, offset)
            start = offset + FRAME.size
            if start + length > len(payload):
                raise self._damage(seq, "a frame runs past the end of the message")
            piece = payload[start:start + length]
            offset = start + length
            self.last_key = key
            if self._remnant and flags & CONTINUED:
                self.dropped_bytes += length  # the rest of an entry a trim removed
                self._remnant = bool(flags & MORE)
                continue
            self._remnant = False
            if flags & CONTINUED:
                if not self._partial:
                    raise self._damage(seq, "a continued piece follows no open entry")
                if key != self._partial_key:
                    raise self._damage(seq, f"a piece of key {key} continues an entry of key {self._partial_key}")
            elif self._partial:
                raise self._damage(seq, "an entry starts before the previous one ended")
            self._partial.append(piece)
            self._partial_key = key
            if not flags & MORE:
                entries.append(Entry(key, b"".join(self._partial)))
                self._partial = []
        return entries

    @property
    def open(self) -> bool:
        """Whether the last message read ended inside an entry."""
        return bool(self._partial)

    def finish(self) -> None:
        if self._partial:
            self._drop_partial()

    def _drop_partial(self) -> None:
        self.dropped_bytes += sum(map(len, self._partial))
        self._partial = []

    def _damage(self, seq: int, problem: str) -> WalCorruptError:
        return WalCorruptError(f"write-ahead log {self.where}: message {seq}: {problem}")
