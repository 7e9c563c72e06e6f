"""Sign and verify ingest requests: Dash's own `Dash-Signature` and the webhook schemes of
GitHub, Stripe, Slack, Shopify, Standard Webhooks and a generic header HMAC; the clock window,
rotation, constant-time compare, and the replay key each verified request is stored under.

A request is authentic when its signature matches ANY of the pipeline's currently valid
secrets (two are valid while a secret is being rotated). Each scheme's headers are checked
(`precheck`) before the body is read, so a request that cannot be authentic costs no body.

What is guaranteed against a replayed request (the same signed request sent again by
whoever captured it), per scheme. The pipeline remembers replay keys as it remembers
`Idempotency-Key`s: one hour, at most 100,000 keys per pipeline, the oldest forgotten first.

| scheme | signed content | replay key | guarantee |
|---|---|---|---|
| dash, stripe, slack | a timestamp and the body | digest of timestamp + body | refused outside 300 s of our clock; |
| | | | inside it, a duplicate (while the key is remembered) |
| standard | delivery id, timestamp, body | `webhook-id` | the same, and a redelivery under the same id |
| | | | is a duplicate after 300 s too |
| github, shopify | the body only | digest of the body | a duplicate while the key is remembered, whatever |
| | | | its (unsigned) delivery id header says; after that it can be stored again |
| hmac | the body only | digest of the body | the same: identical bodies count once while remembered |

So two different requests with byte-identical bodies count once under github, shopify and
hmac, and under stripe and slack when signed in the same second, and under dash when signed
with the same `t`: Dash's `t` may carry a fraction of a second, and the SDK signs each request
to the microsecond (no two requests of one process alike), so its calls are distinct. The delivery id headers
of GitHub (`X-GitHub-Delivery`) and Shopify (`X-Shopify-Webhook-Id`) are not signed: they are
used as the request's idempotency key (a redelivery is a duplicate even if its body changed),
never as its replay key. Beyond 100,000 requests within 300 s (about 333 a second) a replay late
in the window can outlive its key and be stored again.

The key of a `standard` pipeline is its ingest secret read as Standard Webhooks does: the
part after `whsec_` base64-decoded (either alphabet, padding optional); every other scheme
uses the secret's UTF-8 bytes as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from dash_ray.errors import SignatureError

__all__ = [
    "CLOCK_WINDOW_S",
    "SCHEMES",
    "SIGNATURE_HEADER",
    "Scheme",
    "Signed",
    "sign",
    "signature_header",
]

SIGNATURE_HEADER = "dash-signature"
CLOCK_WINDOW_S = 300
_MAX_HEADER = 1024
_MAX_DELIVERY_ID = 190  # a replay key is an idempotency key: at most 200 characters
_ONE_SHOT_BYTES = 64 * 1024
_DIGEST_SIZE = {"sha256": 32, "sha1": 20, "sha512": 64}

Algorithm = Literal["sha256", "sha1", "sha512"]


def sign(secret: str, body: bytes, timestamp: int | str) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>." + body` under `secret` (the timestamp as the
    header writes it: whole seconds, or with a fraction)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b".", hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


_last_stamp_us = 0
_stamp_lock = threading.Lock()


def _unique_now() -> str:
    """Now as `<seconds>.<microseconds>`, never the same twice in this process: two requests
    this process signs are two requests, even with identical bodies in the same second."""
    global _last_stamp_us
    with _stamp_lock:
        _last_stamp_us = max(time.time_ns() // 1000, _last_stamp_us + 1)
        us = _last_stamp_us
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the `Dash-Signature` header for `body`: signed at `timestamp` (whole
    seconds), or now to the microsecond, a time no other request of this process has."""
    t = _unique_now() if timestamp is None else str(int(timestamp))
    return f"t={t},v1={sign(secret, body, t)}"


class Signed(NamedTuple):
    """What a request's headers say: the signed message is `prefix + body`; `given` are the
    candidate signatures (raw digest bytes); `timestamp` when the scheme has one; `delivery`
    a delivery id the signature covers."""

    prefix: bytes
    given: tuple[bytes, ...]
    timestamp: float | None = None
    delivery: str | None = None


def _header(headers: Mapping[str, str], name: str, shown: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {shown} header", where=shown)
    if len(value) > _MAX_HEADER:
        raise SignatureError(f"{shown} header is too long", where=shown)
    return value


def _unix_time(value: str, shown: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise SignatureError(f"{shown} timestamp is not a unix time in seconds", where=shown)
    return int(value)


def _dash_time(value: str, shown: str) -> tuple[float, str]:
    """Dash's `t`: whole seconds, or seconds with a fraction of 1 to 9 digits, signed as
    written. (The time, the text the signature covers.)"""
    seconds, dot, fraction = value.partition(".")
    if not dot:
        t = _unix_time(value, shown)
        return t, str(t)
    if not (fraction.isascii() and fraction.isdigit() and len(fraction) <= 9):
        raise SignatureError(f"{shown} timestamp is not a unix time in seconds", where=shown)
    return _unix_time(seconds, shown) + int(fraction) / 10 ** len(fraction), value


def _hex(value: str, size: int, shown: str) -> bytes:
    raw = b""
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            pass
    if len(raw) != size:  # (fromhex skips spaces, so a shorter result is not hex either)
        raise SignatureError(f"{shown} signature is not {2 * size} hex digits", where=shown)
    return raw


def _b64(value: str, size: int, shown: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise SignatureError(f"{shown} signature is not the base64 of a {size}-byte HMAC", where=shown)
    return raw


@dataclass(frozen=True)
class Scheme:
    """One way of signing a request. Subclasses say how to read the headers (`parse`); the
    check itself is the same for all: HMAC(key, prefix + body) against every given
    signature and every secret, compared in constant time with no short-circuit."""

    name = ""  # the scheme's name in a spec, and its replay keys' prefix
    shown = ""  # the header named in error messages
    algorithm: Algorithm = "sha256"
    window_s: int = CLOCK_WINDOW_S
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def parse(self, headers: Mapping[str, str]) -> Signed:
        raise NotImplementedError

    def key(self, secret: str) -> bytes:
        return secret.encode()

    def precheck(self, headers: Mapping[str, str]) -> Signed:
        """Refuse headers that cannot be authentic: missing, malformed, or outside the clock
        window. Needs no body and no secret."""
        signed = self.parse(headers)
        self._in_window(signed)
        return signed

    def _in_window(self, signed: Signed) -> None:
        if signed.timestamp is not None and abs(self.clock() - signed.timestamp) > self.window_s:
            raise SignatureError(
                f"signature timestamp is outside the {self.window_s} s window (clock skew or a replay)",
                where=self.shown,
            )

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
               signed: Signed | None = None) -> str:
        """Check the signature; returns the request's replay key (see the module docstring).
        `signed` is what `precheck` returned for these headers, when it was called."""
        if not secrets:
            raise SignatureError("this pipeline has no valid ingest secret")
        if signed is None:
            signed = self.precheck(headers)
        else:
            self._in_window(signed)  # again: the body may have taken a while to arrive
        matched = False
        if len(body) <= _ONE_SHOT_BYTES:
            # One copy of a small message is cheaper than an HMAC object per secret.
            message = signed.prefix + body
            for secret in secrets:
                expected = hmac.digest(self.key(secret), message, self.algorithm)
                for given in signed.given:
                    matched |= hmac.compare_digest(expected, given)
        else:
            for secret in secrets:
                mac = hmac.new(self.key(secret), signed.prefix, self.algorithm)
                mac.update(body)
                expected = mac.digest()
                for given in signed.given:
                    matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise SignatureError("signature does not match", where=self.shown)
        if signed.delivery is not None:
            return f"{self.name}:{signed.delivery}"
        # The signed message, not the header text: extra or reordered signatures in a
        # replayed header cannot change it.
        digest = hashlib.sha256(signed.prefix)
        digest.update(body)
        return f"{self.name}:{digest.hexdigest()[:32]}"


def _timestamped(value: str, shown: str, *, fraction: bool = False) -> tuple[float, str, list[bytes]]:
    """`t=<unix seconds>,v1=<hex>[,v1=<hex>...]` (Dash and Stripe; Dash's `t` may carry a
    `fraction`); other keys are ignored. (The time, the `t` text signed, the signatures.)"""
    timestamp: float | None = None
    text = ""
    signatures: list[bytes] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if key == "t" and sep:
            if fraction:
                timestamp, text = _dash_time(item, shown)
            else:
                timestamp = _unix_time(item, shown)
                text = str(timestamp)
        elif key == "v1" and sep:
            signatures.append(_hex(item, 32, shown))
    if timestamp is None or not signatures:
        raise SignatureError(f"{shown} must look like 't=<unix seconds>,v1=<hex hmac>'", where=shown)
    return timestamp, text, signatures


@dataclass(frozen=True)
class DashScheme(Scheme):
    """`Dash-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`; `t` may
    carry a fraction of a second (`t=1714567890.123456`, up to 9 digits), signed as written,
    so two requests with identical bodies in one second have two replay keys."""

    name = "dash"
    shown = "Dash-Signature"

    def parse(self, headers: Mapping[str, str]) -> Signed:
        t, text, signatures = _timestamped(_header(headers, SIGNATURE_HEADER, self.shown), self.shown,
                                           fraction=True)
        return Signed(f"{text}.".encode(), tuple(signatures), t)


@dataclass(frozen=True)
class StripeScheme(Scheme):
    """`Stripe-Signature: t=..,v1=..[,v1=..]` over `"<t>." + body`, the endpoint secret's
    bytes as the key (Stripe sends one v1 per secret while one is being rolled)."""

    name = "stripe"
    shown = "Stripe-Signature"

    def parse(self, headers: Mapping[str, str]) -> Signed:
        t, text, signatures = _timestamped(_header(headers, "stripe-signature", self.shown), self.shown)
        return Signed(f"{text}.".encode(), tuple(signatures), t)


@dataclass(frozen=True)
class SlackScheme(Scheme):
    """`X-Slack-Signature: v0=<hex>` over `"v0:<X-Slack-Request-Timestamp>:" + body`."""

    name = "slack"
    shown = "X-Slack-Signature"

    def parse(self, headers: Mapping[str, str]) -> Signed:
        value = _header(headers, "x-slack-signature", self.shown)
        raw_t = _header(headers, "x-slack-request-timestamp", "X-Slack-Request-Timestamp")
        t = _unix_time(raw_t, "X-Slack-Request-Timestamp")
        if not value.startswith("v0="):
            raise SignatureError("X-Slack-Signature must start with 'v0='", where=self.shown)
        # Slack signs the timestamp header as sent.
        return Signed(b"v0:" + raw_t.encode() + b":", (_hex(value[3:], 32, self.shown),), t)


@dataclass(frozen=True)
class StandardScheme(Scheme):
    """Standard Webhooks: `webhook-id`, `webhook-timestamp`, and `webhook-signature: v1,<base64>`
    (several, space-separated, during a rotation) over `"<id>.<timestamp>." + body`; the id is
    signed, so it is the replay key."""

    name = "standard"
    shown = "webhook-signature"

    def parse(self, headers: Mapping[str, str]) -> Signed:
        delivery = _header(headers, "webhook-id", "webhook-id")
        if len(delivery) > _MAX_DELIVERY_ID:
            raise SignatureError(f"webhook-id is longer than {_MAX_DELIVERY_ID} characters", where="webhook-id")
        t = _unix_time(_header(headers, "webhook-timestamp", "webhook-timestamp"), "webhook-timestamp")
        signatures = []
        for entry in _header(headers, "webhook-signature", self.shown).split():
            version, _, value = entry.partition(",")
            if version == "v1":
                signatures.append(_b64(value, 32, self.shown))
        if not signatures:
            raise SignatureError("webhook-signature has no 'v1,<base64>' entry", where=self.shown)
        return Signed(delivery.encode("latin-1") + f".{t}.".encode(), tuple(signatures), t, delivery)

    def key(self, secret: str) -> bytes:
        rest = secret.removeprefix("whsec_").replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(rest + "=" * (-len(rest) % 4), validate=True)
        except (binascii.Error, ValueError):
            return secret.encode()


@dataclass(frozen=True)
class HeaderHmacScheme(Scheme):
    """A header holding `prefix + encode(HMAC(secret, body))`: GitHub's `X-Hub-Signature-256:
    sha256=<hex>`, Shopify's `X-Shopify-Hmac-Sha256: <base64>`, or one a spec names. The body
    alone is signed: no timestamp, hence no clock window."""

    header: str = "X-Signature"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    label: str = "hmac"

    # Scheme's plain class attributes, computed here from the fields (never assigned: frozen).
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    @property
    def shown(self) -> str:  # type: ignore[override]
        return self.header

    def parse(self, headers: Mapping[str, str]) -> Signed:
        value = _header(headers, self.header.lower(), self.header)
        if self.prefix and not value.startswith(self.prefix):
            raise SignatureError(f"{self.header} must start with {self.prefix!r}", where=self.header)
        given = value[len(self.prefix):].strip()
        size = _DIGEST_SIZE[self.algorithm]
        if self.encoding == "base64":
            return Signed(b"", (_b64(given, size, self.header),))
        return Signed(b"", (_hex(given, size, self.header),))


def _github(**options: object) -> Scheme:
    return HeaderHmacScheme(header="X-Hub-Signature-256", prefix="sha256=", label="github", **options)  # type: ignore[arg-type]


def _shopify(**options: object) -> Scheme:
    return HeaderHmacScheme(header="X-Shopify-Hmac-Sha256", encoding="base64", label="shopify",
                            **options)  # type: ignore[arg-type]


# The webhook `verify` names of a spec, each to how its scheme is built.
SCHEMES: dict[str, Callable[..., Scheme]] = {
    "dash": DashScheme,
    "github": _github,
    "stripe": StripeScheme,
    "slack": SlackScheme,
    "shopify": _shopify,
    "standard": StandardScheme,
    "hmac": HeaderHmacScheme,
}

# Headers some providers send with a delivery id they do not sign: used as the request's
# idempotency key when it carries no Idempotency-Key of its own.
DELIVERY_HEADERS: dict[str, str] = {"github": "x-github-delivery", "shopify": "x-shopify-webhook-id"}
