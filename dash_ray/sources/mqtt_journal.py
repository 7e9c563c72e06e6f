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

The journal is one small file (`mqtt.journal`) in the pipeline's state folder, replaced
atomically before each append (not fsynced: a crash of the machine itself, rather than the
process, may lose it, and then a message sent again is stored twice: at least once).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.sources.durable import batch_from_json, batch_to_json, write_atomically

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
        self.pending: _Pending | None = None

    @classmethod
    def load(cls, path: Path, window: int) -> Journal:
        """The journal as the last run left it; `pending` is a batch whose append may not
        have finished (append it again under its key, then `stored`)."""
        journal = cls(path, window)
        if not path.exists():
            return journal
        data = orjson.loads(path.read_bytes())
        for item in data.get("recent", []):
            journal._remember(item)
        if (batch := data.get("batch")) is not None:
            journal.pending = _Pending(batch_from_json(batch), list(batch["digests"]))
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
        self.pending = _Pending(batch, digests)
        self._write()

    def stored(self) -> None:
        """The pending batch is durable: its messages join the recent ones."""
        if self.pending is None:
            return
        for key in self.pending.digests:
            self._remember(key)
        self.pending = None

    def _remember(self, key: str) -> None:
        if len(self._recent) == self.window:
            old = self._recent[0]
            self._counts[old] -= 1
            if self._counts[old] <= 0:
                del self._counts[old]
        self._recent.append(key)
        self._counts[key] += 1

    def _write(self) -> None:
        data: dict[str, object] = {"recent": list(self._recent)}
        if (pending := self.pending) is not None:
            data["batch"] = {**batch_to_json(pending.batch), "digests": pending.digests}
        write_atomically(self.path, data)
