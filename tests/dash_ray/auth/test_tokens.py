"""Token format, hashing and scopes; ingest secrets; the admin token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dash_ray.auth.tokens import (
    allows,
    hash_token,
    load_or_create_admin_token,
    new_secret,
    new_token,
    token_id_of,
    token_matches,
)


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [("admin", {"admin", "write", "read"}), ("write", {"write", "read"}), ("read", {"read"}), ("root", set())],
)
def test_scopes_nest(scope: str, allowed: set[str]) -> None:
    assert {needed for needed in ("admin", "write", "read") if allows(scope, needed)} == allowed


def test_an_unknown_needed_scope_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown scope 'wirte'"):
        allows("admin", "wirte")


def test_tokens_carry_their_id_and_hash() -> None:
    token_id, token = new_token()
    assert token.startswith(f"dash_{token_id}_") and len(token) > 50
    assert token_id_of(token) == token_id
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))
    assert new_token() != new_token()


@pytest.mark.parametrize(
    "text", ["", "dash", "dash_", "dash_abc_x", "dash_0123456789ab_", "dash_0123456789AB_x", "tok_0123456789ab_x"]
)
def test_malformed_tokens_have_no_id(text: str) -> None:
    assert token_id_of(text) is None


def test_ingest_secrets_are_random_and_prefixed() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and len(a) >= 6 + 43 and a != b


def test_admin_token_env_wins_then_file_then_new(tmp_path: Path) -> None:
    path = tmp_path / "home" / "admin.token"
    assert load_or_create_admin_token(" from-env ", path) == "from-env"
    assert not path.exists()

    made = load_or_create_admin_token(None, path)
    assert made.startswith("dash_admin_") and len(made) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == made + "\n"
    assert load_or_create_admin_token("", path) == made


def test_ingest_secrets_decode_the_way_standard_webhooks_senders_decode_them():
    import base64

    from dash_ray.auth.tokens import new_secret

    for _ in range(200):
        secret = new_secret()
        assert secret.startswith("whsec_")
        # The reference library's lenient decode drops characters outside the standard
        # alphabet; a strict decode must give the same 33 key bytes.
        strict = base64.b64decode(secret[6:], validate=True)
        assert base64.b64decode(secret[6:] + "==") == strict and len(strict) == 33
