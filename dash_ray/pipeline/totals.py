"""A pipeline's totals that outlive its restarts: how many of its stored records were mapped,
dead-lettered or filtered, through its stored seq, kept in the lake beside its bronze files
(`_totals.json`), so a pipeline restarted on another node finds them as it finds its marks.

`Counters` are memory and start again at each start; the page and `GET /v1/pipelines/{id}`
show `totals` instead, which are these stored ones plus what the running process has mapped
since (everything it maps lies past the stored seq it started at, so nothing is counted twice).

Guarantees:
- The file is written (atomically: replaced whole) *before* a range is marked
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from dash_ray.lake import Lake
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
    """`_totals.json` in a pipeline's bronze folder of the lake."""

    NAME = "_totals.json"

    def __init__(self, lake: Lake, pipeline: str) -> None:
        self.lake = lake
        self.pipeline = pipeline

    def load(self, stored_seq: int) -> Totals:
        """The totals through `stored_seq`; counting from it when the file does not have them.
        Blocking: call it in a thread. StorageError when the lake cannot be read."""
        data = self.lake.read_note("bronze", self.pipeline, self.NAME)
        try:
            entries: list[dict[str, Any]] = json.loads(data or b"{}")["entries"]
            found = [Totals(**e) for e in entries if e.get("seq") == stored_seq]
        except (ValueError, KeyError, TypeError):
            found = []
        return found[-1] if found else Totals(seq=stored_seq, from_seq=stored_seq)

    def save(self, before: Totals, after: Totals) -> None:
        """Keep both (before a range is marked stored). Blocking: call it in a thread.
        StorageError when the lake cannot be written (the flush is retried)."""
        data = json.dumps({"entries": [asdict(before), asdict(after)]}).encode()
        self.lake.write_note("bronze", self.pipeline, self.NAME, data)
