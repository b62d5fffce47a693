"""The access-control pieces on their own: token verification, where a credential is
read from, revocations, origins, rate limits and the identity's rules (SPEC §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tidings.auth.authenticator import Authenticator, credential_from
from tidings.auth.origins import origin_allowed
from tidings.auth.revocation import Revocations
from tidings.auth.tokens import TokenVerifier, mint_token
from tidings.errors import Unauthorized
from tidings.identity import ANONYMOUS, Identity
from tidings.ratelimit import RateLimiter
from tidings.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
OTHER_SECRET = "another-unit-test-secret-long-enough-for-hs256"

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refusal(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    # The message is for the client: it never repeats the token or its signature.
    message = caught.value.message
    assert token not in message
    signature = token.split(".")[-1]
    assert len(signature) < 8 or signature not in message
    return caught.value


# -- TokenVerifier -------------------------------------------------------------------


def test_hs256_token_becomes_an_identity() -> None:
    token = mint_token(
        SECRET,
        sub="alice",
        ttl=600,
        channels=["group:*"],
        publish=["group:1"],
        tenant="acme",
        admin=True,
        jti="token-1",
    )
    identity = TokenVerifier(secret=SECRET).verify(token)
    assert identity.client_id == "alice"
    assert identity.tenant == "acme"
    assert identity.admin is True
    assert identity.subscribe == ("group:*",)
    assert identity.publish == ("group:1",)
    assert identity.token_id == "token-1"
    assert identity.expires_at is not None
    assert identity.issued_at is not None
    assert 590 <= identity.expires_at - time.time() <= 601
    assert identity.expires_at - identity.issued_at == 600
    assert identity.claims["sub"] == "alice"


def test_the_commands_claim_lists_the_commands_a_client_may_run() -> None:
    verifier = TokenVerifier(secret=SECRET)
    allowed = verifier.verify(mint_token(SECRET, sub="a", commands=["job.*", "ping"]))
    assert allowed.commands == ("job.*", "ping")
    assert allowed.may_command("job.cancel") and allowed.may_command("ping")
    assert not allowed.may_command("admin.reset") and not allowed.may_command("pings")
    # No claim: no command at all; an admin token runs any.
    assert not verifier.verify(mint_token(SECRET, sub="b")).may_command("ping")
    assert verifier.verify(mint_token(SECRET, sub="c", admin=True)).may_command("anything")
    bad = jwt.encode(_claims(commands=[1]), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="'commands' must be a list of patterns"):
        verifier.verify(bad)


def test_admin_must_be_literally_true() -> None:
    token = jwt.encode(_claims(admin="yes"), SECRET, algorithm="HS256")
    assert TokenVerifier(secret=SECRET).verify(token).admin is False


@pytest.mark.parametrize(
    ("key", "algorithm"), [(_RSA, "RS256"), (_EC, "ES256")], ids=["RS256", "ES256"]
)
def test_asymmetric_tokens_with_a_public_key(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str
) -> None:
    verifier = TokenVerifier(public_key=_public_pem(key))
    token = jwt.encode(_claims(channels=["a"]), key, algorithm=algorithm)
    identity = verifier.verify(token)
    assert identity.client_id == "alice"
    assert identity.subscribe == ("a",)


def test_asymmetric_token_signed_by_another_key_is_refused() -> None:
    verifier = TokenVerifier(public_key=_public_pem(_RSA))
    token = jwt.encode(_claims(), _RSA_OTHER, algorithm="RS256")
    assert _refusal(verifier, token).code == "invalid_token"


def test_public_key_verifier_from_a_pem_file(tmp_path: Path) -> None:
    pem = tmp_path / "public.pem"
    pem.write_text(_public_pem(_EC))
    verifier = TokenVerifier.from_files(secret=None, public_key_file=str(pem), jwks_file=None)
    assert verifier.verify(jwt.encode(_claims(), _EC, algorithm="ES256")).client_id == "alice"


def _jwks() -> dict[str, Any]:
    rsa_jwk = RSAAlgorithm.to_jwk(_RSA.public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(_EC.public_key(), as_dict=True)
    return {
        "keys": [
            {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
            {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
        ]
    }


def test_jwks_selects_the_key_by_kid(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks()))
    verifier = TokenVerifier.from_files(secret=None, public_key_file=None, jwks_file=str(path))
    by_rsa = jwt.encode(_claims(sub="r"), _RSA, algorithm="RS256", headers={"kid": "rsa-1"})
    by_ec = jwt.encode(_claims(sub="e"), _EC, algorithm="ES256", headers={"kid": "ec-1"})
    assert verifier.verify(by_rsa).client_id == "r"
    assert verifier.verify(by_ec).client_id == "e"
    # The kid names the key: a token claiming the RSA key but signed by another fails.
    forged = jwt.encode(_claims(), _RSA_OTHER, algorithm="RS256", headers={"kid": "rsa-1"})
    assert _refusal(verifier, forged).code == "invalid_token"
    unknown = jwt.encode(_claims(), _RSA, algorithm="RS256", headers={"kid": "rotated-away"})
    error = _refusal(verifier, unknown)
    assert error.code == "invalid_token"
    assert "kid" in error.message
    # An EC-signed token presented under the RSA key's kid is refused, not a crash.
    mixed = jwt.encode(_claims(), _EC, algorithm="ES256", headers={"kid": "rsa-1"})
    assert _refusal(verifier, mixed).code == "invalid_token"
    # Without a kid, the key is the one whose algorithm fits the token.
    no_kid = jwt.encode(_claims(sub="n"), _EC, algorithm="ES256")
    assert verifier.verify(no_kid).client_id == "n"
    odd_header = _b64(json.dumps({"alg": "RS256", "kid": ["rsa-1"]}).encode())
    odd_kid = f"{odd_header}.{by_rsa.split('.', 1)[1]}"
    assert _refusal(verifier, odd_kid).code == "invalid_token"


def test_alg_none_is_refused_by_every_verifier() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    for verifier in (
        TokenVerifier(secret=SECRET),
        TokenVerifier(public_key=_public_pem(_RSA)),
        TokenVerifier(jwks=_jwks()),
    ):
        error = _refusal(verifier, token)
        assert error.code == "invalid_token"
        assert "none" in error.message


def test_hs256_token_is_refused_by_an_rs256_only_verifier() -> None:
    """Algorithm confusion: HMAC-signing with the *public* key as the secret."""
    pem = _public_pem(_RSA)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(admin=True)).encode())
    signature = hmac.new(pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{_b64(signature)}"
    assert _refusal(TokenVerifier(public_key=pem), forged).code == "invalid_token"
    assert _refusal(TokenVerifier(jwks=_jwks()), forged).code == "invalid_token"
    # An ordinary HS256 token is refused too: this verifier has no shared secret.
    plain = mint_token(SECRET, sub="alice")
    assert _refusal(TokenVerifier(public_key=pem), plain).code == "invalid_token"


def test_rs256_token_is_refused_by_an_hs256_only_verifier() -> None:
    token = jwt.encode(_claims(), _RSA, algorithm="RS256")
    assert _refusal(TokenVerifier(secret=SECRET), token).code == "invalid_token"


def test_other_hmac_algorithms_are_refused() -> None:
    token = jwt.encode(_claims(), SECRET + "-made-longer-for-hs512-" * 3, algorithm="HS512")
    assert _refusal(TokenVerifier(secret=SECRET), token).code == "invalid_token"


def test_expired_token_has_its_own_code() -> None:
    token = mint_token(SECRET, sub="alice", ttl=-5)
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "token_expired"
    assert error.status == 401


def test_verify_at_a_given_time_refuses_a_token_expired_by_then() -> None:
    token = mint_token(SECRET, sub="alice", ttl=60)
    verifier = TokenVerifier(secret=SECRET)
    assert verifier.verify(token, now=time.time()).client_id == "alice"
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token, now=time.time() + 61)
    assert caught.value.code == "token_expired"


def test_bad_signature_is_refused() -> None:
    token = mint_token(OTHER_SECRET, sub="alice")
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "signature" in error.message
    # Tampering with the claims breaks the signature as well.
    header, _, signature = mint_token(SECRET, sub="alice").split(".")
    payload = _b64(json.dumps(_claims(sub="root", admin=True)).encode())
    assert _refusal(TokenVerifier(secret=SECRET), f"{header}.{payload}.{signature}").code == (
        "invalid_token"
    )


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c", "....", "é.é.é"])
def test_malformed_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        TokenVerifier(secret=SECRET).verify(garbage)
    assert caught.value.code == "invalid_token"


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_sub_and_exp_are_required(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    error = _refusal(TokenVerifier(secret=SECRET), jwt.encode(claims, SECRET, algorithm="HS256"))
    assert error.code == "invalid_token"
    assert missing in error.message


@pytest.mark.parametrize("sub", ["", 42, None, ["alice"]])
def test_sub_must_be_a_non_empty_string(sub: Any) -> None:
    claims = {**_claims(), "sub": sub}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert _refusal(TokenVerifier(secret=SECRET), token).code == "invalid_token"


@pytest.mark.parametrize(
    "sub", ["a\nevent: forged", "a\rb", "a\x00b", "a,b;c", "a b", "auth0|123", "x" * 194]
)
def test_sub_must_fit_in_the_personal_channel_name(sub: str) -> None:
    """The personal channel ``client:<sub>`` is written into SSE ``id:`` lines and
    cursors as it is: a subject that is no channel name is refused, never escaped."""
    token = jwt.encode({**_claims(), "sub": sub}, SECRET, algorithm="HS256")
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "client:<sub>" in error.message


@pytest.mark.parametrize(
    "sub", ["alice@example.com", "550e8400-e29b-41d4-a716-446655440000", "org/7:user=3", "x" * 193]
)
def test_subjects_that_name_a_channel_are_accepted(sub: str) -> None:
    token = jwt.encode({**_claims(), "sub": sub}, SECRET, algorithm="HS256")
    assert TokenVerifier(secret=SECRET).verify(token).client_id == sub


def test_audience_is_checked_when_configured() -> None:
    verifier = TokenVerifier(secret=SECRET, audience="tidings")
    good = mint_token(SECRET, sub="alice", extra={"aud": "tidings"})
    assert verifier.verify(good).client_id == "alice"
    wrong = mint_token(SECRET, sub="alice", extra={"aud": "billing"})
    assert "audience" in _refusal(verifier, wrong).message
    absent = mint_token(SECRET, sub="alice")
    assert _refusal(verifier, absent).code == "invalid_token"
    # Without a configured audience, an aud claim is not held against the token.
    assert TokenVerifier(secret=SECRET).verify(wrong).client_id == "alice"


def test_issuer_is_checked_when_configured() -> None:
    verifier = TokenVerifier(secret=SECRET, issuer="https://auth.example")
    good = mint_token(SECRET, sub="alice", extra={"iss": "https://auth.example"})
    assert verifier.verify(good).client_id == "alice"
    wrong = mint_token(SECRET, sub="alice", extra={"iss": "https://evil.example"})
    assert "issuer" in _refusal(verifier, wrong).message
    absent = mint_token(SECRET, sub="alice")
    assert _refusal(verifier, absent).code == "invalid_token"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("channels", 5),
        ("channels", {"a": 1}),
        ("channels", ["a", 1]),
        ("publish", True),
        ("publish", [None]),
    ],
)
def test_pattern_claims_must_be_lists_of_strings(claim: str, value: Any) -> None:
    token = jwt.encode(_claims(**{claim: value}), SECRET, algorithm="HS256")
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert claim in error.message


def test_a_single_pattern_string_is_read_as_a_list() -> None:
    token = jwt.encode(_claims(channels="group:*", publish="group:1"), SECRET, algorithm="HS256")
    identity = TokenVerifier(secret=SECRET).verify(token)
    assert identity.subscribe == ("group:*",)
    assert identity.publish == ("group:1",)


def test_absent_pattern_claims_allow_nothing() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    identity = TokenVerifier(secret=SECRET).verify(token)
    assert identity.subscribe == ()
    assert identity.publish == ()
    assert not identity.may_subscribe("anything")
    assert not identity.may_publish("anything")
    assert identity.may_subscribe("client:alice")


@pytest.mark.parametrize("tenant", ["", 7, ["acme"], "ac me", "acme#1", "a" * 300])
def test_tenant_claim_must_fit_in_a_channel_name(tenant: Any) -> None:
    token = jwt.encode(_claims(tenant=tenant), SECRET, algorithm="HS256")
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "tenant" in error.message


def test_tenant_claim_is_read() -> None:
    token = mint_token(SECRET, sub="alice", tenant="acme-corp.eu")
    assert TokenVerifier(secret=SECRET).verify(token).tenant == "acme-corp.eu"


def test_a_verifier_needs_key_material() -> None:
    with pytest.raises(ValueError):
        TokenVerifier()


# -- Authenticator -------------------------------------------------------------------


def test_authenticator_open_mode_api_keys_and_tokens() -> None:
    open_hub = Authenticator(Settings(), Revocations())
    assert open_hub.authenticate(None) is ANONYMOUS
    assert open_hub.authenticate("whatever") is ANONYMOUS

    key = "publisher-key-0123456789abcdef"
    secured = Authenticator(
        Settings(jwt_secret=SECRET, api_keys={"billing": key}), revocations := Revocations()
    )
    with pytest.raises(Unauthorized) as caught:
        secured.authenticate(None)
    assert caught.value.code == "unauthorized"
    publisher = secured.authenticate(key)
    assert publisher.client_id == "apikey:billing"
    assert publisher.admin is True
    with pytest.raises(Unauthorized):
        secured.authenticate(key + "x")
    token = mint_token(SECRET, sub="alice", jti="j-1")
    assert secured.authenticate(token).client_id == "alice"
    revocations.revoke("alice", token_ids=["j-1"], until=time.time() + 60)
    with pytest.raises(Unauthorized) as caught:
        secured.authenticate(token)
    assert caught.value.code == "token_revoked"

    keys_only = Authenticator(Settings(api_keys={"billing": key}), Revocations())
    assert keys_only.verifier is None
    with pytest.raises(Unauthorized) as caught:
        keys_only.authenticate(token)
    assert caught.value.code == "unauthorized"


# -- credential_from -----------------------------------------------------------------


def _headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in values.items()]


def test_credential_order_query_then_bearer_then_cookie() -> None:
    everything = _headers(authorization="Bearer from-header", cookie="access_token=from-cookie")
    assert credential_from(b"channel=a&token=from-query", everything) == "from-query"
    assert credential_from(b"channel=a", everything) == "from-header"
    cookie_only = _headers(cookie="theme=dark; access_token=from-cookie")
    assert credential_from(b"channel=a", cookie_only) == "from-cookie"
    assert credential_from(b"", []) is None


def test_credential_header_order_does_not_matter() -> None:
    headers = _headers(cookie="access_token=from-cookie", authorization="Bearer from-header")
    assert credential_from(b"", headers) == "from-header"


def test_credential_ignores_empty_and_other_schemes() -> None:
    headers = _headers(authorization="Basic dXNlcjpwdw==", cookie="access_token=from-cookie")
    assert credential_from(b"token=", headers) == "from-cookie"
    assert credential_from(b"", _headers(authorization="Bearer   ")) is None
    assert credential_from(b"", _headers(authorization="bearer lower-case")) == "lower-case"
    assert credential_from(b"", _headers(cookie="access_token=")) is None
    assert credential_from(b"", _headers(cookie="other=1")) is None


def test_credential_from_a_percent_encoded_query() -> None:
    assert credential_from(b"token=a%2Bb.c", []) == "a+b.c"


# -- Revocations ---------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_revoked_token_id_is_refused_until_it_would_have_expired() -> None:
    clock = FakeClock()
    revocations = Revocations(clock=clock)
    old = Identity(client_id="alice", token_id="j-1", issued_at=clock.now + 10)
    other = Identity(client_id="bob", token_id="j-2", issued_at=clock.now - 10)
    revocations.revoke("mallory", token_ids=["j-1"], until=clock.now + 60, at=clock.now - 100)
    assert revocations.is_revoked(old)
    assert not revocations.is_revoked(other)
    clock.now += 60
    assert not revocations.is_revoked(old)
    assert len(revocations) == 0


def test_client_revocation_refuses_tokens_issued_before_it() -> None:
    clock = FakeClock()
    revocations = Revocations(clock=clock)
    revocations.revoke("alice", until=clock.now + 3600)
    before = Identity(client_id="alice", issued_at=clock.now - 1)
    same_moment = Identity(client_id="alice", issued_at=clock.now)
    after = Identity(client_id="alice", issued_at=clock.now + 1)
    unknown_iat = Identity(client_id="alice")
    assert revocations.is_revoked(before)
    assert revocations.is_revoked(same_moment)
    assert revocations.is_revoked(unknown_iat)
    assert not revocations.is_revoked(after)
    assert not revocations.is_revoked(Identity(client_id="bob", issued_at=clock.now - 1))
    assert len(revocations) == 1


def test_repeated_client_revocations_keep_the_latest_moment_and_expiry() -> None:
    clock = FakeClock()
    revocations = Revocations(clock=clock)
    revocations.revoke("alice", until=clock.now + 100, at=clock.now)
    revocations.revoke("alice", until=clock.now + 50, at=clock.now + 20)
    assert revocations.is_revoked(Identity(client_id="alice", issued_at=clock.now + 10))
    clock.now += 99
    assert revocations.is_revoked(Identity(client_id="alice", issued_at=clock.now - 80))
    clock.now += 1
    assert not revocations.is_revoked(Identity(client_id="alice", issued_at=0))


def test_revocations_are_pruned_once_the_tokens_expire() -> None:
    clock = FakeClock()
    revocations = Revocations(clock=clock)
    for n in range(50):
        revocations.revoke(f"c{n}", token_ids=[f"j{n}"], until=clock.now + n + 1)
    assert len(revocations) == 100
    clock.now += 25
    revocations.is_revoked(Identity(client_id="nobody"))
    assert len(revocations) == 50
    assert not revocations.is_revoked(Identity(client_id="c10", token_id="j10", issued_at=0))
    assert revocations.is_revoked(Identity(client_id="c40", token_id="j40", issued_at=0))
    clock.now += 100
    revocations.is_revoked(Identity(client_id="nobody"))
    assert len(revocations) == 0


# -- origins -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "hub.example", (), True),  # not a browser
        ("https://hub.example", "hub.example", (), True),  # same origin
        ("https://HUB.example", "hub.example", (), True),
        ("https://hub.example:8443", "hub.example:8443", (), True),
        ("https://hub.example:8443", "hub.example", (), False),
        ("http://localhost:5173", "hub.example", (), True),
        ("http://127.0.0.1:3000", "hub.example", (), True),
        ("http://[::1]:3000", "hub.example", (), True),
        ("https://evil.example", "hub.example", (), False),
        ("https://hub.example.evil.example", "hub.example", (), False),
        ("https://app.example", "hub.example", ("https://app.example",), True),
        ("https://app.example", "hub.example", ("https://app.example/",), True),
        ("http://app.example", "hub.example", ("https://app.example",), False),
        ("https://evil.example", "hub.example", ("*",), True),
        ("null", "hub.example", (), False),
        ("file://", "hub.example", (), False),
        ("ftp://hub.example", "hub.example", (), False),
        ("https://evil.example", None, (), False),
    ],
)
def test_origin_allowed(
    origin: str | None, host: str | None, allowed: tuple[str, ...], expected: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is expected


# -- RateLimiter ---------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 60, clock=clock)
    assert [limiter.hit("10.0.0.1") for _ in range(5)] == [None] * 5
    assert limiter.hit("10.0.0.1") == pytest.approx(12.0)
    assert limiter.hit("10.0.0.2") is None  # keys are independent
    clock.now += 6
    assert limiter.hit("10.0.0.1") == pytest.approx(6.0)  # refused hits take nothing
    clock.now += 6
    assert limiter.hit("10.0.0.1") is None
    assert limiter.hit("10.0.0.1") == pytest.approx(12.0)


def test_rate_limiter_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, 1, clock=clock)  # binary fractions: exact arithmetic
    for _ in range(4):
        assert limiter.hit("alice") is None
    assert limiter.hit("alice") == 0.25
    clock.now += 0.125
    assert limiter.hit("alice") == 0.125
    clock.now += 0.125
    assert limiter.hit("alice") is None
    clock.now += 3600  # a long pause refills to the burst size, not beyond
    assert [limiter.hit("alice") for _ in range(5)] == [None] * 4 + [0.25]


def test_rate_limiter_tracks_a_bounded_number_of_keys() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 60, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.hit(key) is None
    assert limiter.hit("a") is not None  # "a" is now the most recently used
    assert limiter.hit("d") is None  # "b", the least recently used, is forgotten
    assert len(limiter._buckets) == 3
    assert limiter.hit("a") is not None
    assert limiter.hit("c") is not None
    assert limiter.hit("b") is None  # forgetting a key only ever gives it a full bucket
    assert len(limiter._buckets) == 3
    for n in range(1000):
        limiter.hit(f"flood-{n}")
    assert len(limiter._buckets) == 3


# -- Identity ------------------------------------------------------------------------


def test_patterns_decide_subscribe_and_publish() -> None:
    identity = Identity(client_id="sup-1", subscribe=("group:1", "group:2*"), publish=("group:1",))
    assert identity.may_subscribe("group:1")
    assert identity.may_subscribe("group:22")
    assert not identity.may_subscribe("group:3")
    assert identity.may_publish("group:1")
    assert not identity.may_publish("group:2")


def test_tenant_isolation_overrides_patterns() -> None:
    identity = Identity(client_id="alice", tenant="acme", subscribe=("*",), publish=("*",))
    assert identity.may_subscribe("tenant:acme/alerts")
    assert identity.may_publish("tenant:acme/jobs/42")
    for channel in (
        "tenant:globex/alerts",
        "tenant:acme-evil/alerts",
        "tenant:acme",
        "tenant:acmex/alerts",
        "alerts",
        "client:bob",
    ):
        assert not identity.may_subscribe(channel), channel
        assert not identity.may_publish(channel), channel


def test_tenant_patterns_still_narrow_within_the_tenant() -> None:
    identity = Identity(
        client_id="alice", tenant="acme", subscribe=("tenant:acme/onu.*",), publish=()
    )
    assert identity.may_subscribe("tenant:acme/onu.status")
    assert not identity.may_subscribe("tenant:acme/radius")
    assert not identity.may_publish("tenant:acme/onu.status")


def test_personal_channel_is_always_ones_own() -> None:
    # In a tenant, the personal channel is the tenant's: two tenants' "alice" are two
    # clients, and neither hears the other's personal events.
    identity = Identity(client_id="alice", tenant="acme", subscribe=(), publish=())
    assert identity.may_subscribe("tenant:acme/client:alice")
    assert not identity.may_subscribe("client:alice")
    assert not identity.may_subscribe("tenant:other/client:alice")
    assert not identity.may_subscribe("tenant:acme/client:bob")
    # Receiving it does not mean publishing to it.
    assert not identity.may_publish("tenant:acme/client:alice")
    plain = Identity(client_id="alice", subscribe=(), publish=())
    assert plain.may_subscribe("client:alice") and not plain.may_subscribe("client:alice2")


def test_open_mode_identity_may_do_anything() -> None:
    assert ANONYMOUS.may_subscribe("anything")
    assert ANONYMOUS.may_publish("tenant:acme/x")
    assert ANONYMOUS.admin


@pytest.mark.parametrize("tenant", ["acme/evil", "a b", "x" * 65, "évil"])
def test_a_tenant_that_could_reach_into_another_tenants_channels_is_refused(tenant: str) -> None:
    secret = "unit-secret-that-is-long-enough-for-hs256!!"
    token = mint_token(secret, sub="m", tenant=tenant, channels=["*"])
    with pytest.raises(Unauthorized) as refused:
        TokenVerifier(secret=secret).verify(token)
    assert refused.value.code == "invalid_token"


def test_leeway_tolerates_small_clock_skew_only() -> None:
    secret = "unit-secret-that-is-long-enough-for-hs256!!"
    now = int(time.time())
    ahead = jwt.encode({"sub": "s", "iat": now + 3, "exp": now + 60}, secret, algorithm="HS256")
    assert TokenVerifier(secret=secret, leeway=5).verify(ahead).client_id == "s"
    with pytest.raises(Unauthorized):
        TokenVerifier(secret=secret, leeway=0).verify(ahead)
    late = jwt.encode({"sub": "s", "exp": now - 30}, secret, algorithm="HS256")
    with pytest.raises(Unauthorized) as refused:
        TokenVerifier(secret=secret, leeway=5).verify(late)
    assert refused.value.code == "token_expired"


def test_a_configured_origin_list_replaces_the_localhost_default() -> None:
    assert origin_allowed("http://localhost:5173", "hub:8000", ())
    assert not origin_allowed("http://localhost:5173", "hub:8000", ("https://app.example",))
    assert origin_allowed("http://hub:8000", "hub:8000", ("https://app.example",))
