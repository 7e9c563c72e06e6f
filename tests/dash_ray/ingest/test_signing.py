"""Every verification scheme against vectors computed here with hmac/hashlib as each provider
documents it (and, where the provider publishes one, its own example), rotation (two valid
secrets), the clock window, header checks that need no body, and replay keys."""

import base64
import hashlib
import hmac

import pytest

from dash_ray.errors import SignatureError
from dash_ray.ingest.signing import (
    SCHEMES,
    DashScheme,
    HeaderHmacScheme,
    StandardScheme,
    sign,
    signature_header,
)

BODY = b'{"a": 1}'


def dash(now):
    return DashScheme(clock=lambda: now)


def verify_dash(header, body, secrets, *, now):
    headers = {} if header is None else {"dash-signature": header}
    return dash(now).verify(headers, body, secrets)


def test_sign_matches_the_documented_formula():
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", BODY, 1700000000) == expected
    assert signature_header("s3cret", BODY, 1700000000) == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_fresh_signature():
    header = signature_header("s3cret", BODY, 1000)
    verify_dash(header, BODY, ["s3cret"], now=1000 + 299)


@pytest.mark.parametrize("now", [1000 + 301, 1000 - 301])
def test_verify_refuses_outside_the_clock_window(now):
    header = signature_header("s3cret", BODY, 1000)
    with pytest.raises(SignatureError, match="window"):
        verify_dash(header, BODY, ["s3cret"], now=now)


def test_verify_refuses_a_changed_body_or_wrong_secret():
    header = signature_header("s3cret", BODY, 1000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_dash(header, BODY + b" ", ["s3cret"], now=1000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_dash(header, BODY, ["other"], now=1000)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1000", "v1=00", "t=1000,v1=" + "0" * 2000])
def test_verify_refuses_malformed_headers(header):
    with pytest.raises(SignatureError):
        verify_dash(header, BODY, ["s3cret"], now=1000)


def test_rotation_accepts_either_secret():
    for secret in ("old", "new"):
        verify_dash(signature_header(secret, BODY, 1000), BODY, ["new", "old"], now=1000)


def test_header_with_several_v1_values_matches_any():
    good = sign("s3cret", BODY, 1000)
    verify_dash(f"t=1000,v1={'0' * 64},v1={good}", BODY, ["s3cret"], now=1000)


def test_github_scheme():
    digest = hmac.new(b"gh", BODY, hashlib.sha256).hexdigest()
    verifier = SCHEMES["github"]()
    verifier.verify({"x-hub-signature-256": f"sha256={digest}"}, BODY, ["gh"])
    with pytest.raises(SignatureError, match="sha256="):
        verifier.verify({"x-hub-signature-256": digest}, BODY, ["gh"])
    with pytest.raises(SignatureError, match="missing"):
        verifier.verify({}, BODY, ["gh"])


def test_generic_header_hmac_base64_sha512():
    digest = base64.b64encode(hmac.new(b"k", BODY, hashlib.sha512).digest()).decode()
    verifier = HeaderHmacScheme(header="X-Signature", algorithm="sha512", encoding="base64")
    verifier.verify({"x-signature": digest}, BODY, ["k"])
    with pytest.raises(SignatureError):
        verifier.verify({"x-signature": digest}, BODY + b"x", ["k"])


def test_hex_comparison_ignores_case():
    digest = hmac.new(b"k", BODY, hashlib.sha1).hexdigest().upper()
    HeaderHmacScheme(header="X-Sig", algorithm="sha1").verify({"x-sig": digest}, BODY, ["k"])


def test_no_valid_secret_is_refused():
    with pytest.raises(SignatureError, match="no valid ingest secret"):
        DashScheme().verify({}, BODY, [])


# -- the providers' own published examples ----------------------------------------------------


def test_githubs_published_example():
    # docs.github.com, "Validating webhook deliveries": secret, payload and signature.
    SCHEMES["github"]().verify(
        {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
        b"Hello, World!", ["It's a Secret to Everybody"])


def test_slacks_published_example():
    # api.slack.com, "Verifying requests from Slack".
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    headers = {"x-slack-request-timestamp": "1531420618",
               "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}
    SCHEMES["slack"](clock=lambda: 1531420618 + 10).verify(headers, body, ["8f742231b10e8888abcd99yyyzzz85a5"])


def test_standard_webhooks_published_example():
    # The Standard Webhooks reference libraries' test vector.
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    key = StandardScheme(clock=lambda: 1614265330).verify(
        headers, b'{"test": 2432232314}', ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    assert key == "standard:msg_p5jXN8AQM9LWM0D4loKWxJek"


# -- every scheme, signed independently here -----------------------------------------------

NOW = 1_700_000_000
OURS = "whsec_q-5_Zd3hLr0aVb9n2WmXoCj8uTeYsKgPiHfRt4lN7xA"  # the shape of our ingest secrets


def _mac(key: bytes, message: bytes, algorithm=hashlib.sha256) -> hmac.HMAC:
    return hmac.new(key, message, algorithm)


def _standard_key(secret: str) -> bytes:
    rest = secret.removeprefix("whsec_")
    return base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4))


def signed(scheme: str, secret: str, body: bytes = BODY, t: int = NOW, delivery: str = "msg_1") -> dict[str, str]:
    """The headers a provider sends, computed from its documented algorithm."""
    key = secret.encode()
    if scheme == "dash":
        return {"dash-signature": f"t={t},v1={_mac(key, f'{t}.'.encode() + body).hexdigest()}"}
    if scheme == "stripe":
        return {"stripe-signature": f"t={t},v0=ignored,v1={_mac(key, f'{t}.'.encode() + body).hexdigest()}"}
    if scheme == "slack":
        return {"x-slack-request-timestamp": str(t),
                "x-slack-signature": "v0=" + _mac(key, f"v0:{t}:".encode() + body).hexdigest()}
    if scheme == "github":
        return {"x-hub-signature-256": "sha256=" + _mac(key, body).hexdigest(), "x-github-delivery": delivery}
    if scheme == "shopify":
        return {"x-shopify-hmac-sha256": base64.b64encode(_mac(key, body).digest()).decode(),
                "x-shopify-webhook-id": delivery}
    if scheme == "standard":
        digest = _mac(_standard_key(secret), f"{delivery}.{t}.".encode() + body).digest()
        return {"webhook-id": delivery, "webhook-timestamp": str(t),
                "webhook-signature": "v1," + base64.b64encode(digest).decode()}
    assert scheme == "hmac"
    return {"x-sig": "sha1=" + _mac(key, body, hashlib.sha1).hexdigest()}


def scheme_of(name: str, now: float = NOW):
    if name == "hmac":
        return HeaderHmacScheme(header="X-Sig", algorithm="sha1", prefix="sha1=", clock=lambda: now)
    return SCHEMES[name](clock=lambda: now)


ALL = ["dash", "stripe", "slack", "github", "shopify", "standard", "hmac"]
TIMESTAMPED = ["dash", "stripe", "slack", "standard"]


@pytest.mark.parametrize("name", ALL)
def test_a_correct_signature_verifies_and_any_change_does_not(name):
    scheme = scheme_of(name)
    scheme.verify(signed(name, OURS), BODY, [OURS])
    with pytest.raises(SignatureError, match="does not match"):
        scheme.verify(signed(name, OURS), BODY + b" ", [OURS])
    with pytest.raises(SignatureError, match="does not match"):
        scheme.verify(signed(name, "whsec_" + "B" * 43), BODY, [OURS])


@pytest.mark.parametrize("name", ALL)
def test_rotation_accepts_either_of_two_secrets(name):
    old, new = OURS, "whsec_" + base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")
    scheme = scheme_of(name)
    for secret in (old, new):
        scheme.verify(signed(name, secret), BODY, [new, old])
    with pytest.raises(SignatureError):
        scheme.verify(signed(name, old), BODY, [new])


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize("skew", [301, -301])
def test_timestamped_schemes_refuse_outside_300_s_before_the_body(name, skew):
    headers = signed(name, OURS)
    scheme_of(name, NOW + 300).precheck(headers)
    with pytest.raises(SignatureError, match="window"):
        scheme_of(name, NOW + skew).precheck(headers)


@pytest.mark.parametrize("name", ALL)
def test_precheck_refuses_missing_or_malformed_headers_without_a_body(name):
    scheme = scheme_of(name)
    scheme.precheck(signed(name, OURS))
    with pytest.raises(SignatureError, match="missing"):
        scheme.precheck({})
    mangled = {k: (v[:-3] + "!!!" if "sig" in k or "hmac" in k else v) for k, v in signed(name, OURS).items()}
    with pytest.raises(SignatureError):
        scheme.precheck(mangled)


def test_standard_signature_lists_and_secrets_either_alphabet():
    headers = signed("standard", OURS)
    headers["webhook-signature"] = "v1a,ignored v1," + base64.b64encode(b"x" * 32).decode() + " " + headers[
        "webhook-signature"]
    scheme_of("standard").verify(headers, BODY, [OURS])
    standard_alphabet = "whsec_" + base64.b64encode(_standard_key(OURS)).decode()
    scheme_of("standard").verify(signed("standard", OURS), BODY, [standard_alphabet])
    with pytest.raises(SignatureError, match="v1"):
        scheme_of("standard").precheck({**headers, "webhook-signature": "v2,abc"})


# -- replay keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_the_replay_key_is_the_same_for_a_replay_and_differs_for_another_request(name):
    scheme = scheme_of(name)
    key = scheme.verify(signed(name, OURS), BODY, [OURS])
    assert key.startswith(f"{name}:") and len(key) <= 200
    assert scheme.verify(signed(name, OURS), BODY, [OURS]) == key
    assert scheme.verify(signed(name, OURS, body=b'{"a": 2}', delivery="msg_2"), b'{"a": 2}', [OURS]) != key


def test_a_replay_key_does_not_change_with_extra_signatures_or_which_secret_signed():
    """Derived from the signed content, not the header text: a replayer cannot make a new key
    by adding a v1 entry or keeping only one of the two signatures sent during a rotation."""
    other = "whsec_" + "C" * 43
    scheme = scheme_of("stripe")
    both = f"t={NOW},v1={sign(OURS, BODY, NOW)},v1={sign(other, BODY, NOW)}"
    key = scheme.verify({"stripe-signature": both}, BODY, [other, OURS])
    assert scheme.verify({"stripe-signature": f"t={NOW},v1={sign(OURS, BODY, NOW)},v1={'0' * 64}"},
                         BODY, [other, OURS]) == key
    assert scheme.verify({"stripe-signature": f"t={NOW},v1={sign(other, BODY, NOW)}"}, BODY, [other, OURS]) == key


def test_the_unsigned_delivery_id_does_not_make_a_new_replay_key():
    scheme = scheme_of("github")
    first = scheme.verify(signed("github", OURS, delivery="d-1"), BODY, [OURS])
    assert scheme.verify(signed("github", OURS, delivery="d-2"), BODY, [OURS]) == first


def test_a_signed_delivery_id_is_the_replay_key_across_redeliveries():
    scheme = scheme_of("standard")
    first = scheme.verify(signed("standard", OURS, t=NOW), BODY, [OURS])
    assert scheme_of("standard", NOW + 200).verify(signed("standard", OURS, t=NOW + 200), BODY, [OURS]) == first


def test_the_window_is_checked_again_once_the_body_has_arrived():
    now = [NOW]
    scheme = DashScheme(clock=lambda: now[0])
    headers = signed("dash", OURS)
    checked = scheme.precheck(headers)
    now[0] = NOW + 301  # a body that took long to arrive
    with pytest.raises(SignatureError, match="window"):
        scheme.verify(headers, BODY, [OURS], checked)


# -- sub-second timestamps (issue 22 item 11) ------------------------------------------------


def test_a_timestamp_with_a_fraction_is_signed_as_written_and_makes_a_distinct_replay_key():
    """Identical records sent by two calls in the same second were one replay key, so the
    second call was a duplicate whatever its Idempotency-Key. A fraction in `t` is signed, so
    each call is distinct, while the same request sent again is still the same key."""
    first, second = "1000.000001", "1000.000002"
    keys = set()
    for t in (first, second):
        mac = hmac.new(b"s3cret", f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
        keys.add(verify_dash(f"t={t},v1={mac}", BODY, ["s3cret"], now=1000))
        assert verify_dash(f"t={t},v1={mac}", BODY, ["s3cret"], now=1001) in keys  # a resend: same key
    assert len(keys) == 2
    assert verify_dash(signature_header("s3cret", BODY, 1000), BODY, ["s3cret"], now=1000) not in keys


def test_the_fraction_cannot_be_changed_by_whoever_captured_the_request():
    mac = hmac.new(b"s3cret", b"1000.5." + BODY, hashlib.sha256).hexdigest()
    for t in ("1000.50", "1000", "1000.6", "01000.5"):
        with pytest.raises(SignatureError, match="does not match"):
            verify_dash(f"t={t},v1={mac}", BODY, ["s3cret"], now=1000)


@pytest.mark.parametrize("t", ["1000.", ".5", "1000.5.1", "1000.1234567890", "1e3", "-1000.5", "1000.5x"])
def test_a_malformed_fraction_is_refused(t):
    with pytest.raises(SignatureError, match="unix time"):
        verify_dash(f"t={t},v1={'0' * 64}", BODY, ["s3cret"], now=1000)


def test_the_clock_window_counts_the_fraction():
    mac = hmac.new(b"s3cret", b"1000.9." + BODY, hashlib.sha256).hexdigest()
    verify_dash(f"t=1000.9,v1={mac}", BODY, ["s3cret"], now=1300.8)
    with pytest.raises(SignatureError, match="window"):
        verify_dash(f"t=1000.9,v1={mac}", BODY, ["s3cret"], now=1301)


def test_signing_now_gives_each_request_its_own_microsecond():
    headers = [signature_header("s3cret", BODY) for _ in range(1000)]
    stamps = [h.split(",")[0].removeprefix("t=") for h in headers]
    assert len(set(stamps)) == 1000 and all(len(s.split(".")[1]) == 6 for s in stamps)
    assert [float(s) for s in stamps] == sorted(float(s) for s in stamps)
    for header in headers[:3]:
        verify_dash(header, BODY, ["s3cret"], now=float(stamps[0]))
