"""Standard Webhooks signatures: made here, checked here and by the reference library."""

from __future__ import annotations

import base64

import pytest
import standardwebhooks

from tidings.errors import InvalidSignature
from tidings.signing import generate_secret, secret_key, sign, signed_headers, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"name":"job.cancel","args":{"job_id":"j1"}}'
NOW = 1_700_000_000


def test_the_spec_example_signature() -> None:
    # The example of the Standard Webhooks specification, computed independently.
    body = b'{"test": 2432232314}'
    assert (
        sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_sign_then_verify() -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-timestamp"] == str(NOW)
    verify(SECRET, headers, BODY, now=NOW)
    verify(SECRET, {k.upper(): v for k, v in headers.items()}, BODY, now=NOW)


def test_the_reference_library_accepts_our_signature() -> None:
    headers = signed_headers(SECRET, BODY)
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers) == {
        "name": "job.cancel",
        "args": {"job_id": "j1"},
    }


def test_a_plain_secret_is_used_as_its_bytes() -> None:
    assert secret_key("plain-secret") == b"plain-secret"
    headers = signed_headers("plain-secret", BODY)
    standardwebhooks.Webhook(b"plain-secret").verify(BODY, headers)
    with pytest.raises(InvalidSignature):
        verify("another-secret", headers, BODY)


def test_a_tampered_body_is_refused() -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    with pytest.raises(InvalidSignature, match="no signature"):
        verify(SECRET, headers, BODY.replace(b"j1", b"j2"), now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_too_far_from_now_is_refused(skew: int) -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    verify(SECRET, headers, BODY, now=NOW + 300)
    with pytest.raises(InvalidSignature, match="too far"):
        verify(SECRET, headers, BODY, now=NOW + skew)
    verify(SECRET, headers, BODY, now=NOW + skew, tolerance=400)


def test_one_matching_signature_among_several_is_enough() -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    other = sign(generate_secret(), headers["webhook-id"], NOW, BODY)
    mine = headers["webhook-signature"]
    for listed in (f"{other} {mine}", f"v1a,c29tZXRoaW5n {mine}", f"{mine}  {other}"):
        verify(SECRET, {**headers, "webhook-signature": listed}, BODY, now=NOW)
    with pytest.raises(InvalidSignature):
        verify(SECRET, {**headers, "webhook-signature": other}, BODY, now=NOW)
    # The right digest under another version tag does not count.
    with pytest.raises(InvalidSignature):
        verify(SECRET, {**headers, "webhook-signature": "v2" + mine[2:]}, BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing: str) -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    del headers[missing]
    with pytest.raises(InvalidSignature, match=missing):
        verify(SECRET, headers, BODY, now=NOW)


def test_a_timestamp_that_is_not_a_number_is_refused() -> None:
    headers = signed_headers(SECRET, BODY, timestamp=NOW)
    with pytest.raises(InvalidSignature, match="Unix seconds"):
        verify(SECRET, {**headers, "webhook-timestamp": "soon"}, BODY, now=NOW)


def test_secrets() -> None:
    fresh = generate_secret()
    assert fresh.startswith("whsec_") and len(base64.b64decode(fresh[6:])) == 24
    with pytest.raises(ValueError, match="base64") as caught:
        secret_key("whsec_not*base64")
    assert "not*base64" not in str(caught.value)
