"""Page session ids and cookies, without Ray: an id is random and only its hash is kept, the
cookie is HttpOnly, SameSite=Strict, for the whole origin, Secure over https, and is read back
from a Cookie header among others; a grant lives until the first of its deadlines; the policy
refuses an idle time past the lifetime."""

from __future__ import annotations

import pytest

from dash_ray.auth.sessions import (
    SESSION_COOKIE,
    SessionGrant,
    SessionPolicy,
    clearing_cookie,
    hash_session,
    new_session_id,
    session_cookie,
    session_id_from,
)


def test_ids_are_random_and_stored_only_as_a_hash() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("dss_") and len(i) == 47 for i in ids)
    one = next(iter(ids))
    assert hash_session(one) == hash_session(one) != one and len(hash_session(one)) == 64


def test_the_cookie_is_httponly_strict_and_secure_over_https() -> None:
    plain = session_cookie("dss_abc", secure=False, max_age_s=2592000)
    attributes = plain.split("; ")
    assert attributes[0] == f"{SESSION_COOKIE}=dss_abc"
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2592000"} <= set(attributes)
    assert "Secure" not in attributes
    assert "Secure" in session_cookie("dss_abc", secure=True, max_age_s=60).split("; ")
    cleared = clearing_cookie(secure=True).split("; ")
    assert cleared[0] == f"{SESSION_COOKIE}=" and "Max-Age=0" in cleared and "Secure" in cleared


@pytest.mark.parametrize(("header", "found"), [
    ("dash_session=dss_abc", "dss_abc"),
    ("theme=dark; dash_session=dss_abc; other=1", "dss_abc"),
    ("dash_session=dash_0123456789ab_secret", None),  # a token is not a session id
    ("dash_session=dss_" + "x" * 200, None),
    ("other=dss_abc", None),
    ("", None),
    (None, None),
])
def test_the_session_is_read_from_the_cookie_header(header: str | None, found: str | None) -> None:
    assert session_id_from(header) == found


def test_a_grant_lives_until_the_first_deadline() -> None:
    grant = SessionGrant("h", idle_until=100.0, expires_at=200.0)
    assert grant.live(99.9) and not grant.live(100.0)
    assert not SessionGrant("h", idle_until=300.0, expires_at=200.0).live(200.0)


def test_the_policy_keeps_the_idle_time_within_the_lifetime() -> None:
    assert SessionPolicy().idle_s == 7 * 86400 and SessionPolicy().max_s == 30 * 86400
    with pytest.raises(ValueError, match="DASH_SESSION_IDLE_S"):
        SessionPolicy(idle_s=10, max_s=5)
    with pytest.raises(ValueError, match="DASH_SESSION_IDLE_S"):
        SessionPolicy(idle_s=0, max_s=5)
