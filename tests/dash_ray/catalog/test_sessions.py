"""Page sessions in the catalog, on SQLite and PostgreSQL: stored by the hash of their id
only, listed live with their token's hash, kept alive by use (sliding idle time) up to their
lifetime, ended by sign-out and all at once with their token, bounded per token, and still
there when the catalog is opened again (a registry restart)."""

from __future__ import annotations

from dash_ray.auth.sessions import SessionPolicy, hash_session, new_session_id
from dash_ray.auth.tokens import hash_token
from dash_ray.catalog import Catalog
from tests.dash_ray.catalog.conftest import FakeClock, Place

POLICY = SessionPolicy(idle_s=3600, max_s=4 * 3600, touch_s=60, max_per_token=3)


def _open(catalog: Catalog, token: str, token_id: str) -> str:
    session_id = new_session_id()
    catalog.sessions.open(hash_session(session_id), token_id=token_id, token_hash=hash_token(token), policy=POLICY)
    return hash_session(session_id)


def test_a_session_is_stored_by_its_hash_and_survives_reopening(catalog: Catalog, place: Place,
                                                               clock: FakeClock) -> None:
    token_id, token = catalog.create_token("read", name="page")
    session_id = new_session_id()
    grant = catalog.sessions.open(hash_session(session_id), token_id=token_id, token_hash=hash_token(token),
                                  policy=POLICY)
    assert grant.token_hash == hash_token(token)
    assert grant.expires_at - grant.idle_until == 3 * 3600
    rows = place.raw_rows("sessions")
    assert len(rows) == 1 and session_id not in repr(rows) and token not in repr(rows)
    catalog.close()
    again = place.open(clock=clock)
    try:
        assert again.sessions.grants([], POLICY) == {hash_session(session_id): grant}
    finally:
        again.close()


def test_use_slides_the_idle_deadline_up_to_the_lifetime(catalog: Catalog, clock: FakeClock) -> None:
    token_id, token = catalog.create_token("read", name="page")
    used, idle = _open(catalog, token, token_id), _open(catalog, token, token_id)
    start = clock.now.timestamp()
    for _ in range(3):  # used every 50 min: the idle one ends after an hour
        clock.advance(50 * 60)
        live = catalog.sessions.grants([used], POLICY)
    assert set(live) == {used} and idle not in live
    assert live[used].idle_until == clock.now.timestamp() + 3600
    clock.advance(50 * 60)
    assert set(catalog.sessions.grants([used], POLICY)) == {used}
    clock.advance(40 * 60 - 1)  # 4 h after sign-in, used all along: its lifetime is over
    assert catalog.sessions.grants([used], POLICY)[used].expires_at == start + 4 * 3600
    clock.advance(1)
    assert catalog.sessions.grants([used], POLICY) == {}


def test_a_use_is_written_at_most_once_a_touch_interval(catalog: Catalog, place: Place, clock: FakeClock) -> None:
    token_id, token = catalog.create_token("read", name="page")
    session = _open(catalog, token, token_id)
    opened_at = place.raw_rows("sessions")[0][4]
    clock.advance(30)
    catalog.sessions.grants([session], POLICY)
    assert place.raw_rows("sessions")[0][4] == opened_at  # 30 s: not yet
    clock.advance(31)
    catalog.sessions.grants([session], POLICY)
    assert place.raw_rows("sessions")[0][4] != opened_at


def test_sign_out_ends_one_session_and_revoking_the_token_ends_all(catalog: Catalog) -> None:
    reader_id, reader = catalog.create_token("read", name="reader")
    other_id, other = catalog.create_token("read", name="other")
    first, second = _open(catalog, reader, reader_id), _open(catalog, reader, reader_id)
    admin = _open(catalog, "dash_admin_x", "admin")
    kept = _open(catalog, other, other_id)
    assert catalog.sessions.close(first) is True
    assert catalog.sessions.close(first) is False
    assert set(catalog.sessions.grants([], POLICY)) == {second, admin, kept}
    assert catalog.revoke_token(reader_id) is True
    assert set(catalog.sessions.grants([], POLICY)) == {admin, kept}


def test_past_the_bound_per_token_the_least_recently_used_goes(catalog: Catalog, clock: FakeClock) -> None:
    token_id, token = catalog.create_token("read", name="page")
    sessions = []
    for _ in range(3):
        sessions.append(_open(catalog, token, token_id))
        clock.advance(120)
    catalog.sessions.grants([sessions[0]], POLICY)  # the oldest is the most recently used now
    clock.advance(120)
    newest = _open(catalog, token, token_id)
    assert set(catalog.sessions.grants([], POLICY)) == {sessions[0], sessions[2], newest}
