"""Which store answers a query: the store following the lake (PostgreSQL) while it holds every
row the lake holds, else the lake (DuckDB over its silver Parquet, the source of truth), which
always holds every stored row. An answer that may miss stored rows (PostgreSQL behind while
the lake cannot be read) says so in its `stale` field. The engines are taken by their roles
(`base.py`: `LakeEngine`, `FollowerEngine`), not by their classes.

PostgreSQL falls behind the lake while it is down or slow (the follower catches up from the
lake), and stays short of it for rows it refused; a query then answers from the lake, never
from the older table. The lake's stored seq is listed at most once per `lake_age_s` per
engine (a listing costs about 20 ms per thousand files); so rows stored in the last
`lake_age_s` may be missing from a PostgreSQL answer, as from any answer made a moment earlier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dash_ray.errors import StorageError
from dash_ray.query.base import Behind, FollowerEngine, LakeEngine
from dash_ray.query.model import Query

__all__ = ["Answered", "answer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answered:
    """The answer's JSON body and the store that made it."""

    body: dict[str, Any]
    store: str  # the engine's `store`: "postgres", "lake"

    @property
    def stale(self) -> str | None:
        """Why the answer may miss stored rows (None: it holds every row stored when asked)."""
        stale = self.body.get("stale")
        return None if stale is None else stale["reason"]


def answer(query: Query, lake: LakeEngine, postgres: FollowerEngine | None, *,
           lake_age_s: float = 1.0) -> Answered:
    """The answer to `query` from the following store (PostgreSQL) when the pipeline keeps
    silver there and it is current, else from the lake. Raises what the lake raises when
    PostgreSQL cannot answer either. Blocking."""
    if postgres is None:
        return Answered(lake.run(query), lake.store)
    try:
        lake_seq: int | None = lake.stored_seq(max_age_s=lake_age_s)
    except StorageError as exc:
        lake_seq, unlisted = None, exc
    try:
        got = postgres.run(query, lake_seq=lake_seq)
    except StorageError as exc:
        log.warning("pipeline %s: PostgreSQL could not answer a query, the lake does: %s", lake.pipeline_id, exc)
        return Answered(lake.run(query), lake.store)
    if isinstance(got, Behind):
        try:
            return Answered(lake.run(query), lake.store)
        except StorageError as exc:
            log.warning("pipeline %s: the lake could not answer a query and PostgreSQL is behind it: %s",
                        lake.pipeline_id, exc)
            older = postgres.run(query)
            return Answered({**older, "stale": {"reason": f"{got.reason}, and the lake could not be read",
                                                "stored_seq": got.stored_seq, "lake_seq": got.lake_seq}},
                            postgres.store)
    if lake_seq is None:
        log.warning("pipeline %s: the lake could not be listed; PostgreSQL answers unchecked: %s",
                    lake.pipeline_id, unlisted)
        return Answered({**got, "stale": {"reason": "the lake could not be read, so PostgreSQL's rows could not "
                                                    "be checked against it", "stored_seq": None, "lake_seq": None}},
                        postgres.store)
    return Answered(got, postgres.store)
