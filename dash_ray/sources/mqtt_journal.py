"""What an MQTT source keeps between a durable append and the broker's acknowledgement, so a
message the broker sends again after a crash is not stored twice (`dash_ray.sources.mqtt`).

MQTT at QoS 1 is at least once: a message the broker sent but never saw acknowledged is sent
again, flagged `dup`, when the session resumes. The source acknowledges a message only after
its batch is durable, so a crash between the two makes the broker send it again. Two things
tell such a message apart from new data:
- the broker has at most `window` messages of ours unacknowledged at once (the MQTT 5
  Receive Maximum the source asks for), so a message it sends again is among the last
  `window` the source received; the `Journal` remembers a digest of the topic and payload of
  the last `window` messages stored, and a `dup` message found there is acknowledged
  without storing it again;
- the batch being appended is written to the journal first with its idempotency key, so a
  crash during the append is settled on the next start by appending the same batch again
  under the same key (stored once either way: `dash_ray.ingest.idempotency`).

The journal is one file (`mqtt.journal`) in the pipeline's state folder, a line per batch
(the batch and its messages' digests) appended before the batch's append; every line but the
last was stored, the last may not have been. Past four windows of lines it is rewritten with
the newest window. Not fsynced (a crash of the machine itself, rather than the process, may
lose its end, and then a message sent again is stored twice: at least once).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.sources.durable import batch_from_json, batch_to_json, write_lines_atomically

__all__ = ["Journal", "digest"]


def digest(topic: str, payload: bytes) -> str:
    """The digest a message is recognised by when the broker sends it again."""
    return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=8).hexdigest()


@dataclass
class _Pending:
    batch: RawBatch
    digests: list[str]


class Journal:
    """The digests of the last `window` messages stored, and the batch being stored."""

    def __init__(self, path: Path, window: int) -> None:
        self.path = path
        self.window = window
        self._recent: deque[str] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()
        self._lines: deque[tuple[bytes, int]] = deque()  # the file's lines and their digest counts
        self._in_lines = 0
        self._file: BinaryIO | None = None
        self.pending: _Pending | None = None

    @classmethod
    def load(cls, path: Path, window: int) -> Journal:
        """The journal as the last run left it; `pending` is a batch whose append may not
        have finished (append it again under its key, then `stored`)."""
        journal = cls(path, window)
        if not path.exists():
            return journal
        for line in path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by a crash: its batch was never appended
            journal.stored()
            journal.pending = _Pending(batch_from_json(entry["batch"]), list(entry["digests"]))
            journal._keep(line + b"\n", len(journal.pending.digests))
        return journal

    def seen(self, key: str) -> bool:
        """Whether a message sent again (`dup`) with this digest was stored already; when so,
        it is forgotten once (two copies sent again need two stored)."""
        if self._counts[key] <= 0:
            return False
        self._counts[key] -= 1
        return True

    def begin(self, batch: RawBatch, digests: list[str]) -> None:
        """Before appending `batch` (which carries an idempotency key): write it down."""
        self.stored()
        self.pending = _Pending(batch, digests)
        line = orjson.dumps({"batch": batch_to_json(batch), "digests": digests}) + b"\n"
        self._keep(line, len(digests))
        if self._in_lines > 4 * self.window:
            self._rewrite()
        else:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(line)
            self._file.flush()

    def stored(self) -> None:
        """The pending batch is durable: its messages join the recent ones."""
        if self.pending is None:
            return
        for key in self.pending.digests:
            self._remember(key)
        self.pending = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _keep(self, line: bytes, count: int) -> None:
        self._lines.append((line, count))
        self._in_lines += count

    def _rewrite(self) -> None:
        """Keep the lines of the newest window only (the last is the pending batch)."""
        while self._lines and self._in_lines - self._lines[0][1] >= self.window:
            self._in_lines -= self._lines.popleft()[1]
        self.close()
        write_lines_atomically(self.path, [line for line, _ in self._lines])

    def _remember(self, key: str) -> None:
        if len(self._recent) == self.window:
            old = self._recent[0]
            self._counts[old] -= 1
            if self._counts[old] <= 0:
                del self._counts[old]
        self._recent.append(key)
        self._counts[key] += 1
