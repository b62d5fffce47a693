"""Hostile tokens against a real hub (#17.3): each is refused with the documented error on
every way in (docs/security.md, "Rate limits and limits": 401 with a JSON body over HTTP
and SSE, an ``error`` message then close 4001 over WebSocket), and a well-formed token of
the same hub is admitted, so that a refusal is the hub's judgement of the attack.

The verifier's rules are unit-tested in tests/unit/test_auth_units.py; here they are
reached through the front doors: SSE (token in the ``Authorization`` header),
WebSocket (``?token=``) and the HTTP API (the ``access_token`` cookie).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm
from websockets.exceptions import ConnectionClosed

from tests.servers import RunningHub, running_hub

pytestmark = pytest.mark.streams

SECRET = "jwt-attacks-secret-that-is-long-enough-for-hs256"
CHANNEL = "news"
LEEWAY = 5.0

_HUB_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_HUB_PEM = _HUB_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "mallory", "iat": now, "exp": now + 600, "channels": ["*"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hmac_token(
    header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: str = "sha256"
) -> str:
    """A token HMAC-signed by hand: PyJWT refuses to use a PEM key as an HMAC secret,
    which is exactly what the algorithm-confusion attack does."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unsigned(**claims: Any) -> str:
    return jwt.encode(_claims(**claims), None, algorithm="none")


Outcome = str  # "admitted", or the refusal as "<status or close code> <error code>"


async def _sse(hub: RunningHub, token: str) -> Outcome:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        async with http.stream("GET", f"/api/v1/events?channel={CHANNEL}", headers=headers) as sse:
            if sse.status_code == 200:
                return "admitted"
            assert sse.headers["content-type"].startswith("application/json")
            return f"{sse.status_code} {json.loads(await sse.aread())['error']['code']}"


async def _websocket(hub: RunningHub, token: str) -> Outcome:
    async with websockets.connect(f"{hub.ws_url}/ws?channel={CHANNEL}&token={token}") as ws:
        async with asyncio.timeout(5):
            first = json.loads(await ws.recv())
            if first["type"] == "connected":
                return "admitted"
            assert first["type"] == "error", first
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        return f"{ws.close_code} {first['code']}"


async def _http(hub: RunningHub, token: str) -> Outcome:
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        http.cookies.set("access_token", token)
        response = await http.get(f"/api/v1/channels/{CHANNEL}/history")
        if response.status_code == 200:
            return "admitted"
        return f"{response.status_code} {response.json()['error']['code']}"


async def _outcomes(hub: RunningHub, token: str) -> dict[str, Outcome]:
    return {
        "sse": await _sse(hub, token),
        "websocket": await _websocket(hub, token),
        "http": await _http(hub, token),
    }


def _expect(code: str | None) -> dict[str, Outcome]:
    if code is None:
        return dict.fromkeys(("sse", "websocket", "http"), "admitted")
    return {"sse": f"401 {code}", "websocket": f"4001 {code}", "http": f"401 {code}"}


async def _check(hub: RunningHub, cases: dict[str, tuple[Callable[[], str], str | None]]) -> None:
    found = {name: await _outcomes(hub, make()) for name, (make, _) in cases.items()}
    assert found == {name: _expect(code) for name, (_, code) in cases.items()}
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        assert (await http.get("/health")).status_code == 200


#: Against a hub with a shared secret: (token, None when admitted or the error code).
SECRET_CASES: dict[str, tuple[Callable[[], str], str | None]] = {
    "well_formed": (lambda: jwt.encode(_claims(), SECRET, algorithm="HS256"), None),
    "alg_none": (_unsigned, "invalid_token"),
    "alg_none_with_the_signature_of_a_real_token": (
        lambda: (
            _unsigned().rstrip(".")
            + "."
            + jwt.encode(_claims(), SECRET, algorithm="HS256").rsplit(".", 1)[1]
        ),
        "invalid_token",
    ),
    "alg_None_capitalised": (
        lambda: _hmac_token({"alg": "None", "typ": "JWT"}, _claims(), b"").rsplit(".", 1)[0] + ".",
        "invalid_token",
    ),
    "hs512_with_the_secret": (
        lambda: _hmac_token({"alg": "HS512"}, _claims(), SECRET.encode(), "sha512"),
        "invalid_token",
    ),
    "expired_within_the_leeway": (
        lambda: jwt.encode(_claims(exp=int(time.time()) - 2), SECRET, algorithm="HS256"),
        None,
    ),
    "expired_beyond_the_leeway": (
        lambda: jwt.encode(_claims(exp=int(time.time()) - 30), SECRET, algorithm="HS256"),
        "token_expired",
    ),
    "nbf_within_the_leeway": (
        lambda: jwt.encode(_claims(nbf=int(time.time()) + 2), SECRET, algorithm="HS256"),
        None,
    ),
    "nbf_in_the_future": (
        lambda: jwt.encode(_claims(nbf=int(time.time()) + 60), SECRET, algorithm="HS256"),
        "invalid_token",
    ),
    "iat_in_the_future": (
        lambda: jwt.encode(_claims(iat=int(time.time()) + 60), SECRET, algorithm="HS256"),
        "invalid_token",
    ),
    "no_exp": (lambda: jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), "invalid_token"),
    "exp_not_a_number": (
        lambda: jwt.encode(_claims(exp="tomorrow"), SECRET, algorithm="HS256"),
        "invalid_token",
    ),
}


async def test_hostile_tokens_against_a_shared_secret() -> None:
    async with running_hub(jwt_secret=SECRET, jwt_leeway=LEEWAY) as hub:
        await _check(hub, SECRET_CASES)


#: Against a hub with an RS256 public key (and no secret).
PUBLIC_KEY_CASES: dict[str, tuple[Callable[[], str], str | None]] = {
    "well_formed": (lambda: jwt.encode(_claims(), _HUB_KEY, algorithm="RS256"), None),
    "alg_none": (_unsigned, "invalid_token"),
    # HS/RS confusion: the public key, which anyone may have, as the HMAC secret.
    "hs256_signed_with_the_public_key_pem": (
        lambda: _hmac_token({"alg": "HS256", "typ": "JWT"}, _claims(), _HUB_PEM),
        "invalid_token",
    ),
    "hs256_signed_with_the_public_key_pem_stripped": (
        lambda: _hmac_token({"alg": "HS256", "typ": "JWT"}, _claims(), _HUB_PEM.strip()),
        "invalid_token",
    ),
    "es256_against_the_rsa_key": (
        lambda: jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
        "invalid_token",
    ),
    "rs256_signed_by_another_key": (
        lambda: jwt.encode(_claims(), _ATTACKER_KEY, algorithm="RS256"),
        "invalid_token",
    ),
    # A kid means nothing to a hub with one key: it never picks another key by it.
    "kid_naming_a_file": (
        lambda: jwt.encode(
            _claims(),
            _ATTACKER_KEY,
            algorithm="RS256",
            headers={"kid": "../../../../../proc/self/environ"},
        ),
        "invalid_token",
    ),
    # A key carried in the token itself (jwk) or fetched from where it says (jku).
    "embedded_jwk_of_the_signer": (
        lambda: jwt.encode(
            _claims(),
            _ATTACKER_KEY,
            algorithm="RS256",
            headers={
                "jwk": RSAAlgorithm.to_jwk(_ATTACKER_KEY.public_key(), as_dict=True),
                "jku": "http://127.0.0.1:9/jwks.json",
            },
        ),
        "invalid_token",
    ),
    "expired_beyond_the_leeway": (
        lambda: jwt.encode(_claims(exp=int(time.time()) - 30), _HUB_KEY, algorithm="RS256"),
        "token_expired",
    ),
}


async def test_hostile_tokens_against_a_public_key(tmp_path: Path) -> None:
    pem = tmp_path / "hub.pem"
    pem.write_bytes(_HUB_PEM)
    async with running_hub(jwt_public_key=str(pem), jwt_leeway=LEEWAY) as hub:
        await _check(hub, PUBLIC_KEY_CASES)


def _signed_as(kid: str, key: rsa.RSAPrivateKey = _ATTACKER_KEY) -> Callable[[], str]:
    return lambda: jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": kid})


#: Against a hub with a JWKS of one RSA key, kid "hub-1".
JWKS_CASES: dict[str, tuple[Callable[[], str], str | None]] = {
    "well_formed": (_signed_as("hub-1", _HUB_KEY), None),
    "the_right_kid_signed_by_another_key": (_signed_as("hub-1"), "invalid_token"),
    "an_unknown_kid": (_signed_as("attacker-1"), "invalid_token"),
    "a_path_as_kid": (_signed_as("../../../../etc/passwd"), "invalid_token"),
    "a_url_as_kid": (_signed_as("http://127.0.0.1:9/jwks.json#hub-1"), "invalid_token"),
    "a_sql_like_kid": (_signed_as("hub-1' OR '1'='1"), "invalid_token"),
    "an_empty_kid": (_signed_as(""), "invalid_token"),
    "hs256_with_the_jwk_as_secret": (
        lambda: _hmac_token(
            {"alg": "HS256", "kid": "hub-1"},
            _claims(),
            json.dumps(RSAAlgorithm.to_jwk(_HUB_KEY.public_key(), as_dict=True)).encode(),
        ),
        "invalid_token",
    ),
    "alg_none_with_the_kid": (
        lambda: jwt.encode(_claims(), None, algorithm="none", headers={"kid": "hub-1"}),
        "invalid_token",
    ),
}


async def test_hostile_tokens_against_a_jwks(tmp_path: Path) -> None:
    jwk = RSAAlgorithm.to_jwk(_HUB_KEY.public_key(), as_dict=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "hub-1", "alg": "RS256", "use": "sig"}]}))
    async with running_hub(jwks_file=str(jwks), jwt_leeway=LEEWAY) as hub:
        await _check(hub, JWKS_CASES)


async def _raw_request(hub: RunningHub, head: bytes) -> tuple[bytes, float]:
    """Send a request head; the status line of the answer, and how long it took."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(head)
        # The hub may answer and close before reading everything: that is its right.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(5):
            status = await reader.readline()
    finally:
        writer.close()
    return status, time.monotonic() - started


async def test_a_huge_token_is_refused_at_once_and_the_hub_stays_healthy() -> None:
    huge = "e" * (1 << 20)  # 1 MiB: far over the header block bound (16 KiB)
    upgrade = (
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    heads = {
        "sse_query": f"GET /api/v1/events?channel={CHANNEL}&token={huge} HTTP/1.1\r\n"
        "Host: hub\r\n\r\n".encode(),
        "websocket_query": f"GET /ws?token={huge} HTTP/1.1\r\nHost: hub\r\n".encode()
        + upgrade
        + b"\r\n",
        "sse_header": f"GET /api/v1/events?channel={CHANNEL} HTTP/1.1\r\nHost: hub\r\n"
        f"Authorization: Bearer {huge}\r\n\r\n".encode(),
        "http_api_header": f"GET /api/v1/channels/{CHANNEL}/history HTTP/1.1\r\nHost: hub\r\n"
        f"Authorization: Bearer {huge}\r\n\r\n".encode(),
        "http_api_cookie": f"GET /api/v1/channels/{CHANNEL}/history HTTP/1.1\r\nHost: hub\r\n"
        f"Cookie: access_token={huge}\r\n\r\n".encode(),
    }
    async with running_hub(jwt_secret=SECRET) as hub:
        for name, head in heads.items():
            status, took = await _raw_request(hub, head)
            assert status.startswith(b"HTTP/1.1 431 "), (name, status)
            assert took < 2, (name, took)
        # Within the bounds, a large garbage token is an ordinary bad token. (Under ASGI,
        # uvicorn's WebSocket protocol answers a request line over 8 KiB with 414.)
        large = "e" * 7_000
        assert await _outcomes(hub, large) == _expect("invalid_token")
        async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
            assert (await http.get("/health")).status_code == 200
            fine = jwt.encode(_claims(), SECRET, algorithm="HS256")
            answer = await http.get(f"/api/v1/channels/{CHANNEL}/history?token={fine}")
            assert answer.status_code == 200
