"""Bearer tokens and ingest secrets: their format, generation, stored hash, constant-time
check, the scope model (`admin` ⊇ `write` ⊇ `read`), and the admin token file.

A token reads `dash_<id>_<secret>`: the id (12 hex characters) finds the stored row, the
secret is 32 random bytes. Only `hash_token(token)` is stored. Because a token is
high-entropy, a plain SHA-256 is enough; no slow password hash is needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Literal, get_args

from dash_ray.auth.secretbox import read_or_create_private_file

__all__ = [
    "SCOPES",
    "Scope",
    "allows",
    "hash_token",
    "load_or_create_admin_token",
    "new_secret",
    "new_token",
    "token_id_of",
    "token_matches",
]

Scope = Literal["admin", "write", "read"]
# Narrowest first; a scope allows everything a scope before it allows.
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_RANK: dict[str, int] = {scope: rank for rank, scope in enumerate(SCOPES)}
assert set(_RANK) == set(get_args(Scope))

_PREFIX = "dash"
_ID_HEX_CHARS = 12
_ADMIN_ID = "admin"


def allows(scope: str, needed: str) -> bool:
    """Whether a token of `scope` may do what needs `needed`. An unknown `scope` (say, read
    from an old catalog) allows nothing; an unknown `needed` is a bug and raises ValueError."""
    if needed not in _RANK:
        raise ValueError(f"unknown scope {needed!r}; expected one of {', '.join(SCOPES)}")
    rank = _RANK.get(scope)
    return rank is not None and rank >= _RANK[needed]


def new_token() -> tuple[str, str]:
    """A fresh `(token_id, token)`. The token is shown once and never stored."""
    token_id = secrets.token_hex(_ID_HEX_CHARS // 2)
    return token_id, f"{_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    """The id inside a token, or None when `token` does not have the token format."""
    prefix, sep, rest = token.partition("_")
    token_id, sep2, secret = rest.partition("_")
    if prefix != _PREFIX or not sep or not sep2 or not secret:
        return None
    if len(token_id) != _ID_HEX_CHARS or any(c not in "0123456789abcdef" for c in token_id):
        return None
    return token_id


def hash_token(token: str) -> str:
    """The stored form of a token (the admin token's too): SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Whether `token` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def new_secret() -> str:
    """A new pipeline ingest secret: `whsec_` and 33 random bytes in standard base64 (44
    characters, no padding), the form Standard Webhooks senders decode the key from (their
    reference library drops url-safe `-` and `_` characters)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(33)).decode()


def load_or_create_admin_token(env_value: str | None, path: Path) -> str:
    """The admin token: `env_value` when set (non-blank); else the token in `path`; else a new
    one written there with mode 0600. Creation is atomic, and a file another process creates
    at the same moment wins, so every caller gets the same token."""
    if env_value is not None and env_value.strip():
        return env_value.strip()
    return read_or_create_private_file(
        path, lambda: f"{_PREFIX}_{_ADMIN_ID}_{secrets.token_urlsafe(32)}", what="admin token"
    )
