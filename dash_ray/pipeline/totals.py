"""A pipeline's totals that outlive its restarts: how many of its stored records were mapped,
dead-lettered or filtered, through its stored seq, kept beside its log (`totals.json`).

`Counters` are memory and start again at each start; the page and `GET /v1/pipelines/{id}`
show `totals` instead, which are these stored ones plus what the running process has mapped
since (everything it maps lies past the stored seq it started at, so nothing is counted twice).

Guarantees:
- The file is written (atomically: a new file renamed over the old) *before* a range is marked
  stored, holding both the totals before the range and after it, each with its seq. Whichever
  seq a crash leaves stored, its totals are in the file; a start picks the entry whose seq is
  the stored seq.
- A pipeline whose file holds neither (first started before totals were kept, or the file was
  removed) counts from its stored seq at that start: `from_seq` says so.
Not guaranteed: a dead-letter replay that maps dead letters again does not move them from
`dead` to `mapped`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dash_ray.pipeline.commit import Mapped
from dash_ray.pipeline.counters import Counters

__all__ = ["Totals", "TotalsFile"]


@dataclass(frozen=True)
class Totals:
    """Counts of the records with seq in (`from_seq`, `seq`], as mapped when first stored."""

    seq: int = 0
    mapped: int = 0
    dead: int = 0
    filtered: int = 0
    from_seq: int = 0

    def plus(self, batch: Sequence[Mapped]) -> Totals:
        """These totals with a stored range (which follows `seq`) added."""
        return replace(self, seq=batch[-1].last_seq if batch else self.seq,
                       mapped=self.mapped + sum(m.result.rows.num_rows for m in batch),
                       dead=self.dead + sum(m.result.dead.num_rows for m in batch),
                       filtered=self.filtered + sum(m.result.filtered for m in batch))

    def report(self, since_start: Counters) -> dict[str, int]:
        """The totals as of now, from these (as of the start) and the counts since: `records`
        is the last seq given out, `stored` the stored seq (both durable in the log and lake)."""
        c = since_start
        return {"records": c.last_seq, "stored": c.stored_seq, "mapped": self.mapped + c.mapped,
                "dead": self.dead + c.dead, "filtered": self.filtered + c.filtered, "from_seq": self.from_seq}


class TotalsFile:
    """`totals.json` in a pipeline's state folder."""

    def __init__(self, folder: Path, *, fsync: bool = True) -> None:
        self.path = folder / "totals.json"
        self._fsync = fsync

    def load(self, stored_seq: int) -> Totals:
        """The totals through `stored_seq`; counting from it when the file does not have them."""
        try:
            entries: list[dict[str, Any]] = json.loads(self.path.read_text())["entries"]
            found = [Totals(**e) for e in entries if e.get("seq") == stored_seq]
        except (OSError, ValueError, KeyError, TypeError):
            found = []
        return found[-1] if found else Totals(seq=stored_seq, from_seq=stored_seq)

    def save(self, before: Totals, after: Totals) -> None:
        """Keep both (before a range is marked stored). Blocking: call it in a thread."""
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as f:
            json.dump({"entries": [asdict(before), asdict(after)]}, f)
            if self._fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, self.path)
