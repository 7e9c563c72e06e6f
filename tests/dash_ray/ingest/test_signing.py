import base64
import hashlib
import hmac

import pytest

from dash_ray.errors import SignatureError
from dash_ray.ingest.signing import Verifier, sign, signature_header, verify_dash, verify_header_hmac

BODY = b'{"a": 1}'


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
    verifier = Verifier("github")
    verifier.verify({"x-hub-signature-256": f"sha256={digest}"}, BODY, ["gh"])
    with pytest.raises(SignatureError, match="sha256="):
        verifier.verify({"x-hub-signature-256": digest}, BODY, ["gh"])
    with pytest.raises(SignatureError, match="missing"):
        verifier.verify({}, BODY, ["gh"])


def test_generic_header_hmac_base64_sha512():
    digest = base64.b64encode(hmac.new(b"k", BODY, hashlib.sha512).digest()).decode()
    verifier = Verifier("hmac", header="X-Signature", algorithm="sha512", encoding="base64")
    verifier.verify({"x-signature": digest}, BODY, ["k"])
    with pytest.raises(SignatureError):
        verifier.verify({"x-signature": digest}, BODY + b"x", ["k"])


def test_hex_comparison_ignores_case():
    digest = hmac.new(b"k", BODY, hashlib.sha1).hexdigest().upper()
    verify_header_hmac(digest, BODY, ["k"], header="X-Sig", algorithm="sha1")


def test_no_valid_secret_is_refused():
    with pytest.raises(SignatureError, match="no valid ingest secret"):
        Verifier("dash").verify({}, BODY, [])
