"""The catalog contract, run against every backend: SQLite (a file in tmp_path) and PostgreSQL
(a schema of its own per test in the session's database)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import sqlite3
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.auth.tokens import hash_token
from dash_ray.catalog import MAX_RETIRED_SECRETS, Catalog, PipelineRecord, open_catalog
from dash_ray.errors import InternalError, NotFoundError, SecretKeyError
from dash_ray.spec import parse_spec
from tests.dash_ray.catalog.conftest import T0, FakeClock, Place


def spec(pipeline_id: str = "weather", **extra: Any):
    return parse_spec({"id": pipeline_id, "source": {"kind": "push"}, **extra})


# -- pipelines -----------------------------------------------------------------------------


def test_create_get_list_delete(catalog: Catalog) -> None:
    created = catalog.put_pipeline(spec("weather"), secret="whsec_a")
    catalog.put_pipeline(spec("alpha"), secret="whsec_b")

    assert created.spec == spec("weather")
    assert [s.secret for s in created.secrets] == ["whsec_a"]
    assert created.secrets[0].valid_until is None
    assert (created.status, created.restarts, created.last_error, created.version) == ("starting", 0, None, 1)
    assert created.created_at == created.updated_at == T0
    assert created.created_at.tzinfo is not None and created.created_at.utcoffset() == dt.timedelta(0)

    assert catalog.get_pipeline("weather") == created
    assert catalog.get_pipeline("nope") is None
    assert [r.id for r in catalog.list_pipelines()] == ["alpha", "weather"]

    assert catalog.delete_pipeline("weather") is True
    assert catalog.delete_pipeline("weather") is False
    assert catalog.get_pipeline("weather") is None
    assert [r.id for r in catalog.list_pipelines()] == ["alpha"]


def test_update_bumps_version_and_keeps_secrets_and_state(catalog: Catalog, clock: FakeClock) -> None:
    catalog.put_pipeline(spec(), secret="whsec_a")
    catalog.set_state("weather", status="running", restarts=2, last_error="boom")
    clock.advance(60)

    updated = catalog.put_pipeline(spec(description="v2"), secret=None)

    assert updated.version == 2
    assert updated.spec.description == "v2"
    assert [s.secret for s in updated.secrets] == ["whsec_a"]
    assert (updated.status, updated.restarts, updated.last_error) == ("running", 2, "boom")
    assert updated.created_at == T0
    assert updated.updated_at == T0 + dt.timedelta(seconds=60)
    assert catalog.put_pipeline(spec(description="v3"), secret=None).version == 3
    assert catalog.get_pipeline("weather") == dataclasses.replace(
        updated, spec=spec(description="v3"), version=3
    )


def test_update_with_a_secret_replaces_every_secret(catalog: Catalog) -> None:
    catalog.put_pipeline(spec(), secret="whsec_a")
    catalog.rotate_secret("weather", "whsec_b", grace_seconds=60, now=T0)

    record = catalog.put_pipeline(spec(), secret="whsec_c")

    assert [(s.secret, s.valid_until) for s in record.secrets] == [("whsec_c", None)]


def test_creating_needs_a_secret(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="no pipeline 'weather'"):
        catalog.put_pipeline(spec(), secret=None)
    assert catalog.list_pipelines() == []


def test_state_is_recorded(catalog: Catalog) -> None:
    catalog.put_pipeline(spec(), secret="whsec_a")
    for status in ("running", "restarting", "failed", "stopped", "starting"):
        catalog.set_state("weather", status=status, restarts=3, last_error=f"was {status}")
        record = catalog.get_pipeline("weather")
        assert record is not None
        assert (record.status, record.restarts, record.last_error) == (status, 3, f"was {status}")
    catalog.set_state("weather", status="running", restarts=3, last_error=None)
    assert catalog.get_pipeline("weather").last_error is None  # type: ignore[union-attr]

    with pytest.raises(NotFoundError):
        catalog.set_state("nope", status="running", restarts=0, last_error=None)
    with pytest.raises(ValueError, match="unknown status 'sleeping'"):
        catalog.set_state("weather", status="sleeping", restarts=0, last_error=None)  # type: ignore[arg-type]


# -- secrets -------------------------------------------------------------------------------


def _secrets(record: PipelineRecord | None) -> list[tuple[str, dt.datetime | None]]:
    assert record is not None
    return [(s.secret, s.valid_until) for s in record.secrets]


def test_rotation_keeps_the_previous_secret_for_the_grace_period(catalog: Catalog) -> None:
    catalog.put_pipeline(spec(), secret="whsec_1")
    minute = dt.timedelta(seconds=60)

    catalog.rotate_secret("weather", "whsec_2", grace_seconds=60, now=T0)
    record = catalog.get_pipeline("weather")
    assert _secrets(record) == [("whsec_2", None), ("whsec_1", T0 + minute)]
    assert record is not None
    assert record.valid_secrets(T0 + minute / 2) == ("whsec_2", "whsec_1")
    assert record.valid_secrets(T0 + minute) == ("whsec_2",)

    # The next rotation drops the expired secret; the one it replaces gets its own grace.
    later = T0 + 2 * minute
    catalog.rotate_secret("weather", "whsec_3", grace_seconds=60, now=later)
    assert _secrets(catalog.get_pipeline("weather")) == [("whsec_3", None), ("whsec_2", later + minute)]


def test_each_retired_secret_keeps_its_own_grace(catalog: Catalog) -> None:
    """Issue 22 item 7: a second rotation within the first one's grace cut the first secret
    off at once, although the first rotation had promised it a day."""
    catalog.put_pipeline(spec(), secret="whsec_0")
    day, hour = dt.timedelta(days=1), dt.timedelta(hours=1)
    catalog.rotate_secret("weather", "whsec_1", grace_seconds=86_400, now=T0)
    catalog.rotate_secret("weather", "whsec_2", grace_seconds=3_600, now=T0 + hour)
    record = catalog.get_pipeline("weather")
    assert _secrets(record) == [("whsec_2", None), ("whsec_1", T0 + 2 * hour), ("whsec_0", T0 + day)]
    assert record is not None
    assert record.valid_secrets(T0 + 90 * dt.timedelta(minutes=1)) == ("whsec_2", "whsec_1", "whsec_0")
    assert record.valid_secrets(T0 + 3 * hour) == ("whsec_2", "whsec_0")  # each its own grace
    assert record.valid_secrets(T0 + day) == ("whsec_2",)


def test_at_most_a_few_retired_secrets_are_kept_and_no_grace_revokes_them_all(catalog: Catalog) -> None:
    catalog.put_pipeline(spec(), secret="whsec_0")
    for n in range(1, 7):
        catalog.rotate_secret("weather", f"whsec_{n}", grace_seconds=3_600, now=T0 + dt.timedelta(seconds=n))
    names = [s for s, _ in _secrets(catalog.get_pipeline("weather"))]
    # The current one and the newest MAX_RETIRED_SECRETS retired ones: the oldest went first.
    assert names == ["whsec_6", "whsec_5", "whsec_4", "whsec_3"] and MAX_RETIRED_SECRETS == 3

    # No grace: the secret it replaces and every earlier one stop working at once (a leak).
    catalog.rotate_secret("weather", "whsec_7", grace_seconds=0, now=T0 + dt.timedelta(seconds=10))
    assert _secrets(catalog.get_pipeline("weather")) == [("whsec_7", None)]
    assert _secrets(catalog.list_pipelines()[0]) == [("whsec_7", None)]


def test_rotation_checks_its_arguments(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError):
        catalog.rotate_secret("nope", "whsec_x", grace_seconds=60, now=T0)
    catalog.put_pipeline(spec(), secret="whsec_1")
    with pytest.raises(ValueError, match="timezone-aware"):
        catalog.rotate_secret("weather", "whsec_x", grace_seconds=60, now=dt.datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="grace_seconds"):
        catalog.rotate_secret("weather", "whsec_x", grace_seconds=-1, now=T0)
    assert _secrets(catalog.get_pipeline("weather")) == [("whsec_1", None)]


def test_secrets_and_tokens_are_not_stored_in_plaintext(catalog: Catalog, place: Place) -> None:
    secret_1, secret_2 = "whsec_" + uuid.uuid4().hex, "whsec_" + uuid.uuid4().hex
    catalog.put_pipeline(spec(), secret=secret_1)
    catalog.rotate_secret("weather", secret_2, grace_seconds=60, now=T0)
    _, token = catalog.create_token("admin", name="ops")

    stored = place.raw_bytes()

    assert b"weather" in stored  # the dump does hold the catalog's contents
    # The token's secret part: after `dash_<12 hex id>_` (it may itself contain "_").
    for plaintext in (secret_1, secret_2, token, token.split("_", 2)[2]):
        assert plaintext.encode() not in stored
    ciphertexts = [row[2] for row in place.raw_rows("pipeline_secrets")]
    assert len(ciphertexts) == 2 and all(len(bytes(c)) > 50 for c in ciphertexts)


def test_a_wrong_key_is_a_clear_error_at_open(catalog: Catalog, place: Place) -> None:
    catalog.put_pipeline(spec(), secret="whsec_topsecret")
    catalog.close()
    other = SecretBox.generate_key()

    with pytest.raises(SecretKeyError) as caught:
        place.open(box=SecretBox([other], source="$DASH_SECRET_KEY"))

    message = str(caught.value)
    assert "$DASH_SECRET_KEY" in message and "'weather'" in message
    assert "whsec_topsecret" not in message and other not in message and place.key not in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_an_old_key_listed_after_a_new_one_still_opens_secrets(catalog: Catalog, place: Place) -> None:
    catalog.put_pipeline(spec(), secret="whsec_old")
    catalog.close()
    new_key = SecretBox.generate_key()

    rotated = place.open(box=SecretBox([new_key, place.key]))
    try:
        assert _secrets(rotated.get_pipeline("weather")) == [("whsec_old", None)]
        rotated.put_pipeline(spec("fresh"), secret="whsec_new")
    finally:
        rotated.close()
    # Secrets written since are under the new key alone.
    ciphertext = next(row[2] for row in place.raw_rows("pipeline_secrets") if row[0] == "fresh")
    assert SecretBox([new_key]).decrypt(bytes(ciphertext)) == "whsec_new"


def test_repr_shows_no_secret_or_key(catalog: Catalog, place: Place) -> None:
    record = catalog.put_pipeline(spec(), secret="whsec_hidden")
    catalog.rotate_secret("weather", "whsec_hidden2", grace_seconds=5, now=T0)
    record = catalog.get_pipeline("weather")
    token_id, token = catalog.create_token("read", name="viewer")

    texts = [repr(record), str(record), repr(record.secrets), repr(catalog), repr(catalog.list_tokens())]  # type: ignore[union-attr]

    for text in texts:
        assert "whsec_hidden" not in text and place.key not in text and token not in text
    assert token_id in texts[-1]


# -- tokens --------------------------------------------------------------------------------


def test_tokens_are_created_checked_listed_and_revoked(catalog: Catalog, clock: FakeClock) -> None:
    made = {}
    for scope in ("admin", "write", "read"):
        made[scope] = catalog.create_token(scope, name=f"{scope} token")
        clock.advance(1)

    for scope, (token_id, token) in made.items():
        info = catalog.check_token(token)
        assert info is not None
        assert (info.id, info.name, info.scope) == (token_id, f"{scope} token", scope)
        assert info.created_at.utcoffset() == dt.timedelta(0)
    assert [t.scope for t in catalog.list_tokens()] == ["admin", "write", "read"]

    write_id, write_token = made["write"]
    assert catalog.revoke_token(write_id) is True
    assert catalog.revoke_token(write_id) is False
    assert catalog.revoke_token("000000000000") is False
    assert catalog.check_token(write_token) is None
    assert [t.scope for t in catalog.list_tokens()] == ["admin", "read"]
    # What web replicas check tokens against: the live ones' scopes by hash.
    assert catalog.token_scopes() == {hash_token(made[s][1]): s for s in ("admin", "read")}


def test_only_exact_tokens_check(catalog: Catalog) -> None:
    token_id, token = catalog.create_token("admin", name="ops")
    head, _, secret = token.rpartition("_")
    forged = [
        f"{head}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",  # the right id, a wrong secret
        f"dash_{'0' * 12}_{secret}",  # an unknown id
        token + "x", "", "dash", "dash__", "Bearer " + token, token_id, "x" * 10_000,
    ]
    for attempt in forged:
        assert catalog.check_token(attempt) is None, attempt
    assert catalog.check_token(token) is not None


def test_token_arguments_are_checked(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        catalog.create_token("root", name="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        catalog.create_token("read", name="")
    assert catalog.list_tokens() == []


# -- durability, schema, threads, state ----------------------------------------------------


def test_everything_survives_a_reopen(catalog: Catalog, place: Place) -> None:
    catalog.put_pipeline(spec(), secret="whsec_1")
    catalog.rotate_secret("weather", "whsec_2", grace_seconds=30, now=T0)
    catalog.set_state("weather", status="failed", restarts=6, last_error="gave up")
    token_id, token = catalog.create_token("write", name="ci")
    before = catalog.list_pipelines()
    catalog.close()

    again = place.open()
    try:
        assert again.list_pipelines() == before
        info = again.check_token(token)
        assert info is not None and info.id == token_id and info.scope == "write"
        assert again.put_pipeline(spec(description="next"), secret=None).version == 2
    finally:
        again.close()


# PostgreSQL's migration 2 turned the spec column from JSONB into TEXT (field order); the last
# migration of each backend adds the dashboards table.
SCHEMA_VERSIONS = {"sqlite": [1, 2, 3, 4], "postgres": [1, 2, 3, 4, 5]}


def test_schema_is_versioned(catalog: Catalog, place: Place) -> None:
    versions = place.raw_rows("schema_version")
    assert [row[0] for row in versions] == SCHEMA_VERSIONS[place.backend]
    catalog.close()
    place.open().close()  # opening again migrates nothing
    assert [row[0] for row in place.raw_rows("schema_version")] == SCHEMA_VERSIONS[place.backend]


def test_several_openers_at_once_create_the_schema_once(place: Place) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait()
            place.open().close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [row[0] for row in place.raw_rows("schema_version")] == SCHEMA_VERSIONS[place.backend]


def test_many_threads_can_write_at_once(catalog: Catalog) -> None:
    catalog.put_pipeline(spec("shared"), secret="whsec_s")
    errors: list[BaseException] = []
    n_threads, n_rounds = 8, 15

    def writer(n: int) -> None:
        try:
            for i in range(n_rounds):
                pid = f"p{n}-{i}"
                catalog.put_pipeline(spec(pid), secret=f"whsec_{n}_{i}")
                catalog.set_state(pid, status="running", restarts=i, last_error=None)
                catalog.put_pipeline(spec("shared", description=f"{n}-{i}"), secret=None)
                catalog.create_token("read", name=pid)
                assert catalog.get_pipeline(pid).restarts == i  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    records = catalog.list_pipelines()
    assert len(records) == n_threads * n_rounds + 1
    assert catalog.get_pipeline("shared").version == 1 + n_threads * n_rounds  # type: ignore[union-attr]
    assert len(catalog.list_tokens()) == n_threads * n_rounds
    assert catalog.get_pipeline("p3-4").secrets[0].secret == "whsec_3_4"  # type: ignore[union-attr]


def test_close_is_idempotent_and_final(catalog: Catalog) -> None:
    catalog.close()
    catalog.close()
    assert "closed" in repr(catalog)
    with pytest.raises(InternalError, match="closed"):
        catalog.list_pipelines()


# -- one backend only ----------------------------------------------------------------------


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "catalog.sqlite"
    catalog = open_catalog(path, box=SecretBox([SecretBox.generate_key()]))
    catalog.put_pipeline(spec(), secret="whsec_a")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    finally:
        catalog.close()


def test_an_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        open_catalog("mysql://db/x", box=SecretBox([SecretBox.generate_key()]))
