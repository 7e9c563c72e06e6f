"""`Catalog`: pipeline specs, their ingest secrets (encrypted), supervision state, API
tokens, dashboards and named secrets (`named_secrets.py`), written once as SQL over a
`Backend` (SQLite or PostgreSQL).

Every method is one short transaction, committed before it returns (durable as the backend
makes commits durable), and safe to call from several threads. The registry is the one
writer; other processes may read the same catalog.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog.base import (
    STATUSES,
    Backend,
    PipelineRecord,
    PipelineStatus,
    SecretVersion,
    Transaction,
)
from dash_ray.catalog.dashboards import Dashboards
from dash_ray.catalog.named_secrets import NamedSecrets
from dash_ray.catalog.sessions import SessionStore
from dash_ray.catalog.tokens import TokenTable, utc
from dash_ray.errors import InternalError, NotFoundError
from dash_ray.spec import PipelineSpec, parse_spec

__all__ = ["MAX_RETIRED_SECRETS", "Catalog"]

# Secrets retired by rotations that stay valid for their grace, beside the current one. A
# signed request is checked against each valid secret, so a few, not an unbounded list.
MAX_RETIRED_SECRETS = 3

_PIPELINE_COLUMNS = "id, spec, status, restarts, last_error, version, created_at, updated_at"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Catalog(TokenTable):
    """The durable home of pipelines and tokens. Open one with `open_catalog`."""

    def __init__(
        self,
        backend: Backend,
        *,
        box: SecretBox,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._backend = backend
        self._box = box
        self._clock = clock or _utc_now
        self._state: Literal["open", "closed"] = "open"
        # Dashboards have a module of their own; `catalog.dashboards.put(...)`.
        self.dashboards = Dashboards(backend, self._now)
        # Named secrets for sources and sinks; `catalog.secrets.put(...)`.
        self.secrets = NamedSecrets(backend, box, self._now)
        # Page sessions; `catalog.sessions.open(...)`.
        self.sessions = SessionStore(backend, self._now)
        try:
            self._migrate()
            self._check_key()
        except BaseException:
            backend.close()
            raise

    def __repr__(self) -> str:
        return f"Catalog({self._backend!r}, state={self._state!r})"

    # -- pipelines -------------------------------------------------------------------------

    def create_pipeline(self, spec: PipelineSpec, *, secret: str) -> PipelineRecord | None:
        """Create the pipeline with `secret` as its one ingest secret (status `starting`,
        version 1); None, changing nothing, when a pipeline of that id already exists. Atomic
        against any other writer of the same database: of two creators racing, exactly one
        gets the record and the other None, so the first one's secret stays valid."""
        now = self._now()
        spec_json = _spec_json(spec)
        sealed = self._box.encrypt(secret)

        def work(tx: Transaction) -> PipelineRecord | None:
            inserted = tx.execute(
                "INSERT INTO pipelines (id, spec, status, restarts, last_error, version,"
                " created_at, updated_at) VALUES (?, ?, 'starting', 0, NULL, 1, ?, ?)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                (spec.id, spec_json, now, now),
            )
            if not inserted:
                return None
            tx.execute(
                "INSERT INTO pipeline_secrets (pipeline_id, seq, ciphertext, valid_until,"
                " created_at) VALUES (?, 1, ?, NULL, ?)",
                (spec.id, sealed, now),
            )
            return self._load(tx, spec.id)

        return self._backend.run(work)

    def put_pipeline(self, spec: PipelineSpec, *, secret: str | None) -> PipelineRecord:
        """Create the pipeline (then `secret` is required and becomes its one ingest secret;
        status `starting`, version 1) or replace its spec (version + 1; status and
        restarts are kept). On update `secret=None` keeps the secrets, while a secret
        replaces all of them. Raises NotFoundError when updating with no such pipeline.
        To create without ever replacing another creator's secret, use `create_pipeline`.

        The spec is kept as given, its keys in their order: the order of `mapping.fields`
        is part of the spec (an expression may use only the fields declared before it)."""
        now = self._now()
        spec_json = _spec_json(spec)
        sealed = None if secret is None else self._box.encrypt(secret)

        def work(tx: Transaction) -> PipelineRecord:
            exists = tx.execute("SELECT 1 FROM pipelines WHERE id = ?", (spec.id,))
            if not exists:
                if sealed is None:
                    raise NotFoundError(
                        f"no pipeline {spec.id!r} to update; creating one needs its ingest secret",
                        where=spec.id,
                    )
                tx.execute(
                    "INSERT INTO pipelines (id, spec, status, restarts, last_error, version,"
                    " created_at, updated_at) VALUES (?, ?, 'starting', 0, NULL, 1, ?, ?)",
                    (spec.id, spec_json, now, now),
                )
            else:
                tx.execute(
                    "UPDATE pipelines SET spec = ?, version = version + 1, updated_at = ?"
                    " WHERE id = ?",
                    (spec_json, now, spec.id),
                )
            if sealed is not None:
                tx.execute("DELETE FROM pipeline_secrets WHERE pipeline_id = ?", (spec.id,))
                tx.execute(
                    "INSERT INTO pipeline_secrets (pipeline_id, seq, ciphertext, valid_until,"
                    " created_at) VALUES (?, 1, ?, NULL, ?)",
                    (spec.id, sealed, now),
                )
            record = self._load(tx, spec.id)
            assert record is not None
            return record

        return self._backend.run(work)

    def get_pipeline(self, pipeline_id: str) -> PipelineRecord | None:
        """The pipeline, or None when there is none by that id."""
        return self._backend.run(lambda tx: self._load(tx, pipeline_id))

    def list_pipelines(self) -> list[PipelineRecord]:
        """Every pipeline, sorted by id."""

        def work(tx: Transaction) -> list[PipelineRecord]:
            rows = tx.execute(f"SELECT {_PIPELINE_COLUMNS} FROM pipelines ORDER BY id")
            secrets: dict[str, list[tuple[Any, ...]]] = {}
            for row in tx.execute(
                "SELECT pipeline_id, ciphertext, valid_until FROM pipeline_secrets"
                " ORDER BY pipeline_id, seq DESC"
            ):
                secrets.setdefault(row[0], []).append(row[1:])
            return [self._record(row, secrets.get(row[0], [])) for row in rows]

        return self._backend.run(work)

    def delete_pipeline(self, pipeline_id: str) -> bool:
        """Forget the pipeline and its secrets; False when there was none."""

        def work(tx: Transaction) -> bool:
            tx.execute("DELETE FROM pipeline_secrets WHERE pipeline_id = ?", (pipeline_id,))
            return bool(tx.execute("DELETE FROM pipelines WHERE id = ? RETURNING id", (pipeline_id,)))

        return self._backend.run(work)

    def set_state(
        self, pipeline_id: str, *, status: PipelineStatus, restarts: int, last_error: str | None
    ) -> None:
        """Record the supervisor's view of the pipeline. Raises NotFoundError when there is
        no such pipeline."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        if restarts < 0:
            raise ValueError(f"restarts must be >= 0, not {restarts}")

        def work(tx: Transaction) -> None:
            updated = tx.execute(
                "UPDATE pipelines SET status = ?, restarts = ?, last_error = ? WHERE id = ?"
                " RETURNING id",
                (status, restarts, last_error, pipeline_id),
            )
            if not updated:
                raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)

        self._backend.run(work)

    def rotate_secret(
        self, pipeline_id: str, new_secret: str, *, grace_seconds: float, now: dt.datetime
    ) -> None:
        """Make `new_secret` the current ingest secret. The one it replaces stays valid until
        `now + grace_seconds`; secrets retired by earlier rotations keep their own grace, so
        a second rotation never shortens what the first one promised. At most
        `MAX_RETIRED_SECRETS` retired secrets are kept (each signed request is checked
        against every valid secret): past that the oldest is dropped at once. With
        `grace_seconds` 0 every earlier secret stops working at once (a leaked secret).
        Raises NotFoundError for an unknown pipeline."""
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must be >= 0, not {grace_seconds}")
        now = _aware(now, "now")
        until = now + dt.timedelta(seconds=grace_seconds)
        sealed = self._box.encrypt(new_secret)

        def work(tx: Transaction) -> None:
            if not tx.execute("SELECT 1 FROM pipelines WHERE id = ?", (pipeline_id,)):
                raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
            rows = tx.execute(
                "SELECT seq, valid_until FROM pipeline_secrets WHERE pipeline_id = ?"
                " ORDER BY seq DESC",
                (pipeline_id,),
            )
            last = rows[0][0] if rows else 0
            # The newest secret is the current one; older ones were retired by earlier
            # rotations, newest first, each with its own end.
            keep: list[int] = []
            if rows and grace_seconds > 0:
                keep = [last] + [seq for seq, valid_until in rows[1:]
                                 if valid_until is not None and utc(valid_until) > now]
                keep = keep[:MAX_RETIRED_SECRETS]
            for seq, _ in rows:
                if seq not in keep:
                    tx.execute("DELETE FROM pipeline_secrets WHERE pipeline_id = ? AND seq = ?", (pipeline_id, seq))
            if keep:
                tx.execute(
                    "UPDATE pipeline_secrets SET valid_until = ? WHERE pipeline_id = ? AND seq = ?",
                    (until, pipeline_id, last),
                )
            tx.execute(
                "INSERT INTO pipeline_secrets (pipeline_id, seq, ciphertext, valid_until,"
                " created_at) VALUES (?, ?, ?, NULL, ?)",
                (pipeline_id, last + 1, sealed, now),
            )

        self._backend.run(work)

    def close(self) -> None:
        """Close the connection. Idempotent; any other call afterwards raises InternalError."""
        self._state = "closed"
        self._backend.close()

    # -- internals -------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return _aware(self._clock(), "the clock's time")

    def _migrate(self) -> None:
        migrations = self._backend.migrations
        now = self._now()

        def work(tx: Transaction) -> None:
            for statement in migrations[0]:
                tx.execute(statement)
            current = tx.execute("SELECT max(version) FROM schema_version")[0][0] or 0
            if current > len(migrations):
                raise InternalError(
                    f"catalog {self._backend!r} has schema version {current}, newer than this "
                    f"Dash knows ({len(migrations)}); upgrade Dash"
                )
            for version in range(current + 1, len(migrations) + 1):
                if version > 1:  # the baseline has just run
                    for statement in migrations[version - 1]:
                        tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now)
                )

        self._backend.run(work, exclusive=True)

    def _check_key(self) -> None:
        # A wrong key should stop the platform at start, not at the first signed request.
        rows = self._backend.run(
            lambda tx: tx.execute("SELECT pipeline_id, ciphertext FROM pipeline_secrets LIMIT 1")
        )
        if rows:
            self._open(rows[0][1], rows[0][0])

    def _open(self, ciphertext: bytes, pipeline_id: str) -> str:
        return self._box.decrypt(
            ciphertext, what=f"the ingest secret of pipeline {pipeline_id!r} in {self._backend!r}"
        )

    def _load(self, tx: Transaction, pipeline_id: str) -> PipelineRecord | None:
        rows = tx.execute(f"SELECT {_PIPELINE_COLUMNS} FROM pipelines WHERE id = ?", (pipeline_id,))
        if not rows:
            return None
        secrets = tx.execute(
            "SELECT ciphertext, valid_until FROM pipeline_secrets WHERE pipeline_id = ?"
            " ORDER BY seq DESC",
            (pipeline_id,),
        )
        return self._record(rows[0], secrets)

    def _record(self, row: Sequence[Any], secrets: Sequence[Sequence[Any]]) -> PipelineRecord:
        pipeline_id, spec, status, restarts, last_error, version, created_at, updated_at = row
        opened = tuple(
            SecretVersion(self._open(ciphertext, pipeline_id), utc(until))
            for ciphertext, until in secrets
        )
        return PipelineRecord(
            spec=parse_spec(json.loads(spec) if isinstance(spec, str) else spec),
            secrets=opened,
            status=status,
            restarts=int(restarts),
            last_error=last_error,
            version=int(version),
            created_at=utc(created_at),
            updated_at=utc(updated_at),
        )


def _spec_json(spec: PipelineSpec) -> str:
    # Not sorted: the order of the keys is part of the spec.
    return json.dumps(spec.to_json_dict(), separators=(",", ":"))


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), not naive: {value!r}")
    return value.astimezone(dt.timezone.utc)
