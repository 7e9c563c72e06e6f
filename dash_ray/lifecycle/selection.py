"""What a replay asks for, and what it selects: the stored records a request names (by event
time, like the query API; by receive time; by sequence number; every dead letter; or all),
as seq ranges for `replay.spans_for` to widen to whole files, and how many records it named.

- `from`/`to` (`start_us`/`end_us`) are on the *event* time, as in `query`: the records whose
  stored rows have a time in `[from, to)`. A dead letter has no event time (its record did not
  map), so it is selected by its receive time in the same window.
- `received_from`/`received_to` are on the receive time: the records that arrived in the
  window (found in bronze, and for records bronze no longer has, in dead letters).
- `from_seq`/`to_seq` name sequence numbers, both included.
Only one kind per request; none replays everything stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.errors import MalformedBodyError, QueryError
from dash_ray.lake import Lake, LakeFile
from dash_ray.query.model import iso, parse_query
from dash_ray.silver.schema import Schema

__all__ = ["ReplayRequest", "Selection", "select"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NEVER = 2**62
_BODY_FIELDS = ("from", "to", "received_from", "received_to", "from_seq", "to_seq")
_NO_COLUMNS = Schema(())


@dataclass(frozen=True)
class ReplayRequest:
    """One replay's range (see the module docstring); `dead` selects every dead letter."""

    start_us: int | None = None
    end_us: int | None = None
    received_start_us: int | None = None
    received_end_us: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    dead: bool = False

    def __post_init__(self) -> None:
        kinds = [name for name, given in (
            ("from", self.start_us is not None or self.end_us is not None),
            ("received_from", self.received_start_us is not None or self.received_end_us is not None),
            ("from_seq", self.first_seq is not None or self.last_seq is not None),
            ("dead", self.dead)) if given]
        if len(kinds) > 1:
            raise MalformedBodyError(f"give one of from/to (event time), received_from/received_to (receive "
                                     f"time) or from_seq/to_seq, not {' and '.join(kinds)}", where=kinds[1])
        for name, value in (("from_seq", self.first_seq), ("to_seq", self.last_seq)):
            if value is not None and value < 1:
                raise MalformedBodyError(f"{name!r} must be a positive integer", where=name)
        for low, high, name in ((self.first_seq, self.last_seq, "from_seq"), (self.start_us, self.end_us, "from"),
                                (self.received_start_us, self.received_end_us, "received_from")):
            if low is not None and high is not None and low > high:
                raise MalformedBodyError(f"{name!r} is after {name.replace('from', 'to')!r}", where=name)

    @classmethod
    def of(cls, data: dict[str, Any]) -> ReplayRequest:
        return cls(**data)

    @classmethod
    def from_body(cls, body: Any) -> ReplayRequest:
        """The request an HTTP body (parsed JSON) makes, by the rules of `asked`'s fields:
        times by the query API's rules and messages; MalformedBodyError naming the field."""
        if not isinstance(body, dict):
            raise MalformedBodyError('give {"from": ..., "to": ...} (event times), {"received_from": ..., '
                                     '"received_to": ...} or {"from_seq": ..., "to_seq": ...}', where="body")
        unknown = sorted(set(body) - set(_BODY_FIELDS))
        if unknown:
            raise MalformedBodyError(f"unknown field {unknown[0]!r} in the replay request", where=unknown[0])
        event = _times(body, "from", "to")
        received = _times(body, "received_from", "received_to")
        seqs = {}
        for name in ("from_seq", "to_seq"):
            value = body.get(name)
            if value is not None and (type(value) is not int or value < 1):
                raise MalformedBodyError(f"{name!r} must be a positive integer", where=name)
            seqs[name] = value
        return cls(start_us=event[0], end_us=event[1], received_start_us=received[0], received_end_us=received[1],
                   first_seq=seqs["from_seq"], last_seq=seqs["to_seq"])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def asked(self) -> dict[str, Any]:
        """The request as its HTTP body says it (times in ISO 8601); `{}` for everything."""
        out: dict[str, Any] = {}
        for name, value in (("from", self.start_us), ("to", self.end_us), ("received_from", self.received_start_us),
                            ("received_to", self.received_end_us)):
            if value is not None:
                out[name] = iso(value)
        for name, value in (("from_seq", self.first_seq), ("to_seq", self.last_seq)):
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class Selection:
    """Seq ranges holding the selected records (not yet widened to files), and how many
    stored records the request named."""

    ranges: list[tuple[int, int]]
    matched: int


def select(lake: Lake, pipeline_id: str, request: ReplayRequest, *, stored_seq: int) -> Selection:
    """The records `request` names among those stored (seq <= `stored_seq`). Blocking."""
    if request.dead:
        files = _stored(lake.files("dead", pipeline_id), stored_seq)
        return Selection([(f.first_seq, f.last_seq) for f in files],
                         sum(lake.read_file(f, columns=["seq"]).num_rows for f in files))
    if request.start_us is not None or request.end_us is not None:
        window = (_or(request.start_us, -_NEVER), _or(request.end_us, _NEVER))
        return _merge(_by_time(lake, pipeline_id, "silver", "time", window, stored_seq, event_days=True),
                      _by_time(lake, pipeline_id, "dead", "received_at", window, stored_seq, event_days=False))
    if request.received_start_us is not None or request.received_end_us is not None:
        window = (_or(request.received_start_us, -_NEVER), _or(request.received_end_us, _NEVER))
        bronze = _by_time(lake, pipeline_id, "bronze", "received_at", window, stored_seq, event_days=False)
        dead = _by_time(lake, pipeline_id, "dead", "received_at", window, stored_seq, event_days=False,
                        besides=lake.files("bronze", pipeline_id))
        return _merge(bronze, dead)
    first = request.first_seq or 1
    last = min(request.last_seq if request.last_seq is not None else stored_seq, stored_seq)
    if first > last:
        return Selection([], 0)
    return Selection([(first, last)], last - first + 1)  # seqs are consecutive from 1


def _times(body: dict[str, Any], start: str, end: str) -> tuple[int | None, int | None]:
    """Two of a body's times, by the query API's rules and messages."""
    given = {new: str(body[old]) for old, new in ((start, "from"), (end, "to")) if body.get(old) is not None}
    try:
        checked = parse_query(given, _NO_COLUMNS)
    except QueryError as exc:
        where = {"from": start, "to": end}.get(exc.where or "", exc.where)
        message = exc.message.replace("'from'", repr(start)).replace("'to'", repr(end))
        raise MalformedBodyError(message, where=where) from None
    return checked.start_us, checked.end_us


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _stored(files: list[LakeFile], stored_seq: int) -> list[LakeFile]:
    return [f for f in files if f.last_seq <= stored_seq]


def _day(micros: int) -> dt.date | None:
    if abs(micros) >= _NEVER:
        return None
    return (_EPOCH + dt.timedelta(microseconds=micros)).date()


def _by_time(lake: Lake, pipeline_id: str, area: str, column: str, window: tuple[int, int], stored_seq: int,
             *, event_days: bool, besides: list[LakeFile] | None = None) -> Selection:
    """The rows of `area` whose `column` lies in `window`. Silver files are partitioned by
    their rows' event day, so only the window's days are read; bronze and dead files by the
    day they were stored, which is never before their records arrived, so only days from the
    window's first on. With `besides`, rows whose seq one of those files holds are left out."""
    first_day, last_day = _day(window[0]), _day(window[1] - 1)
    ranges: list[tuple[int, int]] = []
    matched = 0
    for f in _stored(lake.files(area, pipeline_id), stored_seq):
        if (first_day is not None and f.day < first_day) or (event_days and last_day is not None and f.day > last_day):
            continue
        table = lake.read_file(f, columns=["seq", column])
        micros = pc.cast(table.column(column), pa.int64())
        seqs = table.column("seq").filter(pc.and_(pc.greater_equal(micros, window[0]), pc.less(micros, window[1])))
        if besides:
            seqs = _not_in(lake, seqs, [b for b in besides if b.first_seq <= f.last_seq and b.last_seq >= f.first_seq])
        if len(seqs):
            ranges.append((f.first_seq, f.last_seq))
            matched += len(seqs)
    return Selection(ranges, matched)


def _not_in(lake: Lake, seqs: pa.ChunkedArray, files: list[LakeFile]) -> pa.ChunkedArray:
    if not len(seqs) or not files:
        return seqs
    present = pa.concat_arrays([lake.read_file(f, columns=["seq"]).column("seq").combine_chunks() for f in files])
    return seqs.filter(pc.invert(pc.is_in(seqs, value_set=present)))


def _merge(a: Selection, b: Selection) -> Selection:
    return Selection(sorted(set(a.ranges + b.ranges)), a.matched + b.matched)
