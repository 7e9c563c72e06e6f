"""What the query side needs of an engine over one pipeline's silver rows in one store: the
`QueryEngine` Protocol, and the two roles an engine plays in choosing which store answers
(`stores.py`): the lake's (`LakeEngine`, the source of truth, which knows how far it goes)
and a store's that follows the lake (`FollowerEngine`, which may be behind it).

Every engine answers the same query with the same rows (the contract suite,
tests/dash_ray/query/test_contract.py, runs every query on each), in the JSON shape of
`result.py`, and stops a query past its time limit with QueryLimitError; a store that cannot
answer is a StorageError. Methods block: call them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, overload, runtime_checkable

from dash_ray.query.model import Query

__all__ = ["Behind", "FollowerEngine", "LakeEngine", "QueryEngine"]


@dataclass(frozen=True)
class Behind:
    """A following store does not hold every row the lake holds: it has rows through
    `stored_seq` (the lake through `lake_seq`), and `refused` rows it would not take."""

    stored_seq: int
    lake_seq: int
    refused: int

    @property
    def reason(self) -> str:
        if self.refused and self.stored_seq >= self.lake_seq:
            return f"PostgreSQL refused {self.refused} row(s) the lake holds"
        return f"PostgreSQL holds rows through seq {self.stored_seq}, the lake through {self.lake_seq}"


@runtime_checkable
class QueryEngine(Protocol):
    """Queries on one pipeline's silver rows in one store."""

    pipeline_id: str
    store: str  # the store, as an answer names it (`Dash-Query-Store`): "lake", "postgres"

    def run(self, query: Query) -> dict[str, Any]:
        """The answer to `query` (see dash_ray.query.model for its semantics)."""
        ...

    def close(self) -> None:
        """Let go of connections; idempotent."""
        ...


@runtime_checkable
class LakeEngine(QueryEngine, Protocol):
    """The engine over the lake's silver, which holds every stored row."""

    def stored_seq(self, *, max_age_s: float = 0.0) -> int:
        """The highest seq of the lake's silver rows, from a listing at most `max_age_s` old."""
        ...


@runtime_checkable
class FollowerEngine(QueryEngine, Protocol):
    """The engine over a store the lake's rows are copied to (`dash_ray.silver.follower`)."""

    @overload
    def run(self, query: Query) -> dict[str, Any]: ...

    @overload
    def run(self, query: Query, *, lake_seq: int | None) -> dict[str, Any] | Behind: ...

    def run(self, query: Query, *, lake_seq: int | None = None) -> dict[str, Any] | Behind:
        """The answer to `query`; with `lake_seq` (the lake's stored seq), `Behind` instead
        when the store holds fewer rows than the lake, checked in the query's own snapshot."""
        ...
