"""Sign and verify ingest requests: Dash's own `Dash-Signature`, GitHub's
`X-Hub-Signature-256`, and a generic header HMAC; clock window, rotation, constant-time compare.

A request is authentic when its signature matches ANY of the pipeline's currently valid
secrets (two are valid while a secret is being rotated). Only Dash's scheme carries a timestamp,
so only it bounds replay by a clock window; the other schemes rely on `Idempotency-Key` (or the
provider's delivery id) to make a replayed request harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dash_ray.errors import SignatureError

__all__ = [
    "CLOCK_WINDOW_S",
    "SIGNATURE_HEADER",
    "Verifier",
    "sign",
    "signature_header",
    "verify_dash",
    "verify_header_hmac",
]

SIGNATURE_HEADER = "dash-signature"
CLOCK_WINDOW_S = 300
_MAX_HEADER = 1024

Algorithm = Literal["sha256", "sha1", "sha512"]


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>." + body` under `secret`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the `Dash-Signature` header for `body`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={sign(secret, body, t)}"


def _parse_dash_header(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER:
        raise SignatureError("Dash-Signature header is too long", where="Dash-Signature")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("Dash-Signature t= is not a unix time", where="Dash-Signature") from None
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError(
            "Dash-Signature must look like 't=<unix seconds>,v1=<hex hmac>'", where="Dash-Signature"
        )
    return timestamp, signatures


def verify_dash(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    window_s: int = CLOCK_WINDOW_S,
) -> None:
    """Check a `Dash-Signature` header; raise SignatureError saying what is wrong.

    Every (secret, v1) pair is compared in constant time, so the time taken does not reveal
    which secret or how many leading characters matched."""
    if not header:
        raise SignatureError("missing Dash-Signature header", where="Dash-Signature")
    timestamp, signatures = _parse_dash_header(header)
    if abs(now - timestamp) > window_s:
        raise SignatureError(
            f"signature timestamp is outside the {window_s} s window (clock skew or a replay)",
            where="Dash-Signature",
        )
    expected = [sign(secret, body, timestamp) for secret in secrets]
    if not _any_match(expected, signatures):
        raise SignatureError("signature does not match", where="Dash-Signature")


def verify_header_hmac(
    value: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    header: str,
    algorithm: Algorithm = "sha256",
    encoding: Literal["hex", "base64"] = "hex",
    prefix: str = "",
) -> None:
    """Check a header holding `prefix + encode(HMAC(secret, body))`, e.g. GitHub's
    `X-Hub-Signature-256: sha256=<hex>`. There is no timestamp, hence no clock window."""
    if not value:
        raise SignatureError(f"missing {header} header", where=header)
    if len(value) > _MAX_HEADER:
        raise SignatureError(f"{header} header is too long", where=header)
    if prefix and not value.startswith(prefix):
        raise SignatureError(f"{header} must start with {prefix!r}", where=header)
    given = value[len(prefix):].strip()
    expected = []
    for secret in secrets:
        digest = hmac.new(secret.encode(), body, algorithm).digest()
        expected.append(digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())
    if encoding == "hex":
        given = given.lower()
    if not _any_match(expected, [given]):
        raise SignatureError("signature does not match", where=header)


def _any_match(expected: Sequence[str], given: Sequence[str]) -> bool:
    matched = False
    for e in expected:
        for g in given:
            # No short-circuit: every pair is compared whatever the earlier results were.
            matched |= hmac.compare_digest(e.encode(), g.encode())
    return matched


@dataclass(frozen=True)
class Verifier:
    """How one pipeline's requests are verified: a scheme plus its parameters.

    `verify(headers, body, secrets)` takes lower-case header names."""

    scheme: Literal["dash", "github", "hmac"] = "dash"
    header: str | None = None
    algorithm: Algorithm = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    window_s: int = CLOCK_WINDOW_S
    clock: Callable[[], float] = time.time

    def verify(self, headers: dict[str, str], body: bytes, secrets: Sequence[str]) -> None:
        if not secrets:
            raise SignatureError("this pipeline has no valid ingest secret")
        if self.scheme == "dash":
            verify_dash(headers.get(SIGNATURE_HEADER), body, secrets, now=self.clock(), window_s=self.window_s)
        elif self.scheme == "github":
            verify_header_hmac(
                headers.get("x-hub-signature-256"), body, secrets,
                header="X-Hub-Signature-256", algorithm="sha256", encoding="hex", prefix="sha256=",
            )
        else:
            assert self.header is not None
            verify_header_hmac(
                headers.get(self.header.lower()), body, secrets, header=self.header,
                algorithm=self.algorithm, encoding=self.encoding, prefix=self.prefix,
            )
