"""Identity and authorisation over real sockets: the allow/deny matrix, expiry and
refresh, revocation, personal channels, origins."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.servers import RunningHub, running_hub
from tidings.auth.tokens import mint_token

pytestmark = pytest.mark.streams

SECRET = "test-secret-that-is-long-enough-for-hs256!"
API_KEY = "key-for-the-publisher-service-0123456789"
CHANNEL = "tenant:acme/alerts"


def _token(**claims: Any) -> str:
    ttl = claims.pop("ttl", 3600)
    return mint_token(SECRET, ttl=ttl, **claims)


def _credential(kind: str) -> str | None:
    if kind == "none":
        return None
    if kind == "expired":
        return _token(sub="alice", tenant="acme", channels=["*"], publish=["*"], ttl=-10)
    if kind == "bad_signature":
        return mint_token(
            "another-secret-that-is-long-enough-for-it",
            sub="alice",
            tenant="acme",
            channels=["*"],
            publish=["*"],
        )
    if kind == "alg_none":
        claims = {
            "sub": "alice",
            "exp": int(time.time()) + 600,
            "channels": ["*"],
            "publish": ["*"],
        }
        return jwt.encode(claims, None, algorithm="none")
    if kind == "wrong_tenant":
        return _token(sub="mallory", tenant="globex", channels=["*"], publish=["*"])
    if kind == "pattern_mismatch":
        return _token(
            sub="alice",
            tenant="acme",
            channels=["tenant:acme/other"],
            publish=["tenant:acme/other"],
        )
    assert kind == "valid"
    return _token(sub="alice", tenant="acme", channels=["tenant:acme/*"], publish=["tenant:acme/*"])


@pytest.fixture
async def secured() -> AsyncIterator[RunningHub]:
    async with running_hub(
        jwt_secret=SECRET, api_keys={"publisher": API_KEY}, jwt_leeway=1.0
    ) as running:
        yield running


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _query(token: str | None) -> str:
    return f"&token={token}" if token else ""


async def _sse(served: RunningHub, token: str | None) -> int:
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
        url = f"/api/v1/events?channel={CHANNEL}{_query(token)}"
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                body = json.loads(await response.aread())
                assert set(body["error"]) >= {"code", "message"}
            return response.status_code


async def _ws_outcome(served: RunningHub, token: str | None, request: dict[str, Any]) -> str:
    """``"ok"``, ``"error:<code>"`` or ``"closed:<code>"``."""
    url = served.ws_url + "/ws?" + (f"token={token}" if token else "")
    async with websockets.connect(url) as ws:
        first = json.loads(await ws.recv())
        if first["type"] == "error":
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code is not None
            return f"closed:{ws.close_code}"
        assert first["type"] == "connected"
        await ws.send(json.dumps({**request, "id": 1}))
        async with asyncio.timeout(5):
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == 1:
                    return f"error:{reply['code']}" if reply["type"] == "error" else "ok"


async def _operation(served: RunningHub, operation: str, token: str | None) -> str:
    if operation == "sse":
        return str(await _sse(served, token))
    if operation == "ws_subscribe":
        return await _ws_outcome(served, token, {"type": "subscribe", "channel": CHANNEL})
    if operation == "ws_publish":
        return await _ws_outcome(
            served, token, {"type": "publish", "channel": CHANNEL, "event": "x", "data": 1}
        )
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
        if operation == "http_publish":
            response = await http.post(
                "/api/v1/publish", json={"channel": CHANNEL, "data": 1}, headers=_bearer(token)
            )
        else:
            response = await http.get(f"/api/v1/channels/{CHANNEL}/history", headers=_bearer(token))
        if response.status_code >= 400:
            assert response.json()["error"]["code"]
        return str(response.status_code)


DENIED_401 = {
    "sse": "401",
    "ws_subscribe": "closed:4001",
    "ws_publish": "closed:4001",
    "http_publish": "401",
    "history": "401",
}
DENIED_403 = {
    "sse": "403",
    "ws_subscribe": "error:forbidden",
    "ws_publish": "error:forbidden",
    "http_publish": "403",
    "history": "403",
}
ALLOWED = {
    "sse": "200",
    "ws_subscribe": "ok",
    "ws_publish": "ok",
    "http_publish": "201",
    "history": "200",
}
EXPECTED = {
    "none": DENIED_401,
    "expired": DENIED_401,
    "bad_signature": DENIED_401,
    "alg_none": DENIED_401,
    "wrong_tenant": DENIED_403,
    "pattern_mismatch": DENIED_403,
    "valid": ALLOWED,
}


@pytest.mark.parametrize("credential", list(EXPECTED))
async def test_authorisation_matrix(secured: RunningHub, credential: str) -> None:
    token = _credential(credential)
    outcomes = {op: await _operation(secured, op, token) for op in EXPECTED[credential]}
    assert outcomes == EXPECTED[credential]


#: A hub that reads the application's own tokens (SPEC §8 "Existing tokens").
EXISTING_TOKENS = {
    "jwt_claims": {"sub": "username", "tenant": "org.id"},
    "role_claim": "roles",
    "role_channels": {"viewer": ("tenant:acme/*",), "ops": ("*",)},
    "role_publish": {"ops": ("*",)},
}


def _existing_token(**claims: Any) -> str:
    """A token as the application issues it: no `sub`, `channels` or `publish`."""
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


EXISTING = {
    # Roles grant subscribe only, unless --role-publish says otherwise.
    "viewer": (
        _existing_token(username="ann", org={"id": "acme"}, roles="viewer"),
        {**ALLOWED, "ws_publish": "error:forbidden", "http_publish": "403"},
    ),
    "ops": (_existing_token(username="bo", org={"id": "acme"}, roles=["ops"]), ALLOWED),
    # "*" from a role is still confined to the token's tenant.
    "ops_of_another_tenant": (
        _existing_token(username="eve", org={"id": "globex"}, roles=["ops"]),
        DENIED_403,
    ),
    "no_role": (_existing_token(username="cy", org={"id": "acme"}), DENIED_403),
    "no_username": (_existing_token(sub="dee", org={"id": "acme"}, roles="ops"), DENIED_401),
    "bad_tenant": (
        _existing_token(username="fay", org={"id": "acme/evil"}, roles="ops"),
        DENIED_401,
    ),
}


@pytest.mark.parametrize("credential", list(EXISTING))
async def test_authorisation_matrix_for_existing_tokens(credential: str) -> None:
    token, expected = EXISTING[credential]
    async with running_hub(jwt_secret=SECRET, **EXISTING_TOKENS) as served:
        outcomes = {op: await _operation(served, op, token) for op in expected}
    assert outcomes == expected


async def test_an_existing_token_is_the_client_its_claim_names() -> None:
    token = _existing_token(username="ann", org={"id": "acme"}, roles="viewer")
    async with running_hub(jwt_secret=SECRET, **EXISTING_TOKENS) as served:
        async with websockets.connect(f"{served.ws_url}/ws?token={token}") as ws:
            connected = await _recv(ws, "connected")
    assert connected["client_id"] == "ann"


async def test_api_key_publishes_and_credential_sources(secured: RunningHub) -> None:
    token = _credential("valid")
    async with httpx.AsyncClient(base_url=secured.url, timeout=5) as http:
        by_key = await http.post(
            "/api/v1/publish", json={"channel": CHANNEL, "data": 1}, headers=_bearer(API_KEY)
        )
        assert by_key.status_code == 201
        wrong_key = await http.post(
            "/api/v1/publish", json={"channel": CHANNEL, "data": 1}, headers=_bearer("nope")
        )
        assert wrong_key.status_code == 401
        by_query = await http.get(f"/api/v1/channels/{CHANNEL}/history?token={token}")
        assert by_query.status_code == 200
        http.cookies.set("access_token", token)
        by_cookie = await http.get(f"/api/v1/channels/{CHANNEL}/history")
        assert by_cookie.status_code == 200
        admin_only = await http.get("/api/v1/connections")  # alice is not an admin
        assert admin_only.status_code == 403
        assert admin_only.json()["error"]["code"] == "admin_required"
        as_admin = await http.get("/api/v1/connections", headers=_bearer(API_KEY))
        assert as_admin.status_code == 200


async def _recv(ws: websockets.ClientConnection, kind: str, within: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def test_expiry_closes_within_a_second_and_refresh_extends(secured: RunningHub) -> None:
    claims = {"sub": "carol", "tenant": "acme", "channels": ["tenant:acme/*"]}
    short = _token(**claims, ttl=2)
    # One rule for admission and expiry: a token is good until exp + the leeway.
    leeway = secured.hub.settings.jwt_leeway
    exp = jwt.decode(short, options={"verify_signature": False})["exp"] + leeway
    async with (
        websockets.connect(f"{secured.ws_url}/ws?token={short}") as expiring,
        websockets.connect(f"{secured.ws_url}/ws?token={short}") as refreshing,
    ):
        await _recv(expiring, "connected")
        await _recv(refreshing, "connected")
        async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
            async with http.stream("GET", f"/api/v1/events?channel={CHANNEL}&token={short}") as sse:
                assert sse.status_code == 200
                fresh = _token(**claims, ttl=60)
                await refreshing.send(json.dumps({"type": "refresh", "token": fresh, "id": "r"}))
                refreshed = await _recv(refreshing, "refreshed")
                assert refreshed["id"] == "r"
                disconnect = await _recv(expiring, "disconnect", within=5 + leeway)
                closed_at = time.time()
                assert disconnect["reason"] == "token_expired"
                assert -0.1 < closed_at - exp < 1.0
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(expiring.recv(), 5)
                assert expiring.close_code == 4002
                body = b""
                async with asyncio.timeout(5):
                    async for chunk in sse.aiter_bytes():
                        body += chunk
                assert b"event: disconnect" in body
                assert b"token_expired" in body
                assert time.time() - exp < 1.5
        # The refreshed connection outlives the first token.
        await refreshing.send(json.dumps({"type": "ping", "id": "alive"}))
        assert (await _recv(refreshing, "pong"))["id"] == "alive"
        assert time.time() > exp


async def test_refresh_with_another_clients_token_is_refused(secured: RunningHub) -> None:
    mine = _token(sub="dave", channels=["*"])
    async with websockets.connect(f"{secured.ws_url}/ws?token={mine}") as ws:
        await _recv(ws, "connected")
        other = _token(sub="eve", channels=["*"])
        await ws.send(json.dumps({"type": "refresh", "token": other, "id": 9}))
        error = await _recv(ws, "error")
        assert error["code"] == "client_mismatch"
        await ws.send(json.dumps({"type": "refresh", "token": "garbage", "id": 10}))
        assert (await _recv(ws, "error"))["code"] == "invalid_token"


async def test_refresh_with_the_same_sub_of_another_tenant_is_refused(secured: RunningHub) -> None:
    """Two tenants' "bob" are two clients: a connection never changes tenant."""
    mine = _token(sub="bob", tenant="acme", channels=["tenant:acme/*"])
    async with websockets.connect(f"{secured.ws_url}/ws?token={mine}&channel={CHANNEL}") as ws:
        await _recv(ws, "connected")
        theirs = _token(sub="bob", tenant="globex", channels=["tenant:globex/*"])
        await ws.send(json.dumps({"type": "refresh", "token": theirs, "id": "r"}))
        error = await _recv(ws, "error")
        assert (error["code"], error["id"]) == ("client_mismatch", "r")
        # Still acme's bob, on its channels: an event to its personal channel arrives.
        async with httpx.AsyncClient(base_url=secured.url, timeout=5) as http:
            sent = await http.post(
                "/api/v1/publish",
                json={"channel": "tenant:acme/client:bob", "data": "still"},
                headers=_bearer(API_KEY),
            )
            assert sent.status_code == 201
            listed = await http.get("/api/v1/connections", headers=_bearer(API_KEY))
        assert (await _recv(ws, "event"))["data"]["data"] == "still"
        [connection] = listed.json()["connections"]
        assert connection["tenant"] == "acme"
        assert set(connection["channels"]) == {CHANNEL, "tenant:acme/client:bob"}


async def test_disconnect_with_revoke_closes_every_connection(secured: RunningHub) -> None:
    token = _token(sub="bob", channels=["*"], publish=[])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        async with (
            websockets.connect(f"{secured.ws_url}/ws?token={token}") as ws1,
            websockets.connect(f"{secured.ws_url}/ws?channel=x&token={token}") as ws2,
            http.stream("GET", f"/api/v1/events?channel=x&token={token}") as sse,
        ):
            assert sse.status_code == 200
            await _recv(ws1, "connected")
            await _recv(ws2, "connected")
            response = await http.post(
                "/api/v1/clients/bob/disconnect",
                json={"reason": "token_revoked", "revoke": True},
                headers=_bearer(API_KEY),
            )
            assert response.status_code == 202
            for ws in (ws1, ws2):
                assert (await _recv(ws, "disconnect"))["reason"] == "token_revoked"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 4004
            body = b""
            async with asyncio.timeout(5):
                async for chunk in sse.aiter_bytes():
                    body += chunk
            assert b"event: disconnect" in body
            assert b"token_revoked" in body
        assert not secured.hub.connections
        again = await http.get(f"/api/v1/events?channel=x&token={token}")
        assert again.status_code == 401
        assert again.json()["error"]["code"] == "token_revoked"
        async with websockets.connect(f"{secured.ws_url}/ws?token={token}") as ws:
            assert (await _recv(ws, "error"))["code"] == "token_revoked"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4001
        # A token issued after the revocation is accepted again. ``iat`` has whole-second
        # resolution and every token of the revocation's second is refused, so this one
        # is minted in the next second.
        await asyncio.sleep(int(time.time()) + 1.05 - time.time())
        later = _token(sub="bob", channels=["*"])
        fresh = await http.get(f"/api/v1/channels/x/history?token={later}")
        assert fresh.status_code == 200


async def test_personal_channel_reaches_only_that_client(secured: RunningHub) -> None:
    alice = _token(sub="alice", channels=["news"])
    bob = _token(sub="bob", channels=["news"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        async with (
            websockets.connect(f"{secured.ws_url}/ws?token={alice}") as a1,
            websockets.connect(f"{secured.ws_url}/ws?token={alice}") as a2,
            websockets.connect(f"{secured.ws_url}/ws?token={bob}") as b1,
        ):
            for ws in (a1, a2, b1):
                subscribed = await _recv(ws, "subscribed")
                assert subscribed["channel"].startswith("client:")
            response = await http.post(
                "/api/v1/clients/alice/events",
                json={"type": "pairing_completed", "data": {"device": 7}},
                headers=_bearer(API_KEY),
            )
            assert response.status_code == 201
            for ws in (a1, a2):
                event = await _recv(ws, "event")
                assert event["data"]["channel"] == "client:alice"
                assert event["data"]["type"] == "pairing_completed"
            await http.post(
                "/api/v1/clients/bob/events", json={"type": "sentinel"}, headers=_bearer(API_KEY)
            )
            assert (await _recv(b1, "event"))["data"]["type"] == "sentinel"  # not alice's
            # Nobody may subscribe to someone else's personal channel.
            await b1.send(json.dumps({"type": "subscribe", "channel": "client:alice", "id": 5}))
            assert (await _recv(b1, "error"))["code"] == "forbidden"


async def test_origin_allowlist() -> None:
    async with running_hub(allowed_origins=("https://app.example",)) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
            for origin, status in (
                ("https://evil.example", 403),
                ("null", 403),
                ("http://localhost:3000", 403),  # a configured list replaces the default
                ("https://app.example", 200),
                (served.url, 200),
            ):
                async with http.stream(
                    "GET", "/api/v1/events?channel=o", headers={"Origin": origin}
                ) as response:
                    assert response.status_code == status, origin
                    if status == 403:
                        body = json.loads(await response.aread())
                        assert body["error"]["code"] == "origin_not_allowed"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(served.ws_url + "/ws", origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(served.ws_url + "/ws", origin="https://app.example") as ws:
            assert (await _recv(ws, "connected"))["type"] == "connected"


async def _ws_refused(url: str, origin: str, **kwargs: Any) -> int:
    """The HTTP status a WebSocket handshake from ``origin`` is answered with."""
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, origin=origin, **kwargs):
            pass
    return refused.value.response.status_code


async def test_default_origins_allow_only_the_hub_itself_and_localhost() -> None:
    """With no --allowed-origin: same origin, localhost on any port, and requests without
    an Origin (not browsers) are allowed; every other site is refused on both streams."""
    async with running_hub() as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
            for origin, status in (
                ("https://evil.example", 403),
                ("null", 403),  # sandboxed frames, file:// pages
                ("http://localhost.evil.example", 403),
                ("http://127.0.0.1.evil.example:8000", 403),
                ("http://localhost:3000", 200),
                ("http://127.0.0.1:5173", 200),
                (served.url, 200),
            ):
                async with http.stream(
                    "GET", "/api/v1/events?channel=o", headers={"Origin": origin}
                ) as response:
                    assert response.status_code == status, origin
                    if status == 403:
                        body = json.loads(await response.aread())
                        assert body["error"]["code"] == "origin_not_allowed"
                        assert "access-control-allow-origin" not in response.headers
                    else:  # readable by that page, but never with its cookies
                        assert response.headers["access-control-allow-origin"] == origin
                        assert "access-control-allow-credentials" not in response.headers
        for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
            assert await _ws_refused(served.ws_url + "/ws", origin) == 403, origin
        for origin in ("http://localhost:3000", served.url):
            async with websockets.connect(served.ws_url + "/ws", origin=origin) as ws:
                assert (await _recv(ws, "connected"))["type"] == "connected"
        async with websockets.connect(served.ws_url + "/ws") as ws:  # no Origin at all
            assert (await _recv(ws, "connected"))["type"] == "connected"


async def test_cross_site_websocket_hijacking_with_a_cookie_is_refused() -> None:
    """A page on another site makes the browser send the hub's cookie with its WebSocket
    handshake and its EventSource: the origin, not the cookie, decides."""
    allowed = "https://app.example"
    async with running_hub(jwt_secret=SECRET, allowed_origins=(allowed,)) as served:
        token = _token(sub="alice", channels=["news"], publish=["news"])
        cookie = {"Cookie": f"access_token={token}"}
        for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
            status = await _ws_refused(
                served.ws_url + "/ws?channel=news", origin, additional_headers=cookie
            )
            assert status == 403, origin
        async with websockets.connect(
            served.ws_url + "/ws?channel=news",
            origin=allowed,
            additional_headers=cookie,
        ) as ws:
            assert (await _recv(ws, "connected"))["client_id"] == "alice"

        async with httpx.AsyncClient(base_url=served.url, timeout=5, headers=cookie) as http:
            url = "/api/v1/events?channel=news"
            async with http.stream("GET", url, headers={"Origin": "https://evil.example"}) as sse:
                assert sse.status_code == 403
                assert json.loads(await sse.aread())["error"]["code"] == "origin_not_allowed"
                assert "access-control-allow-credentials" not in sse.headers
            async with http.stream("GET", url, headers={"Origin": allowed}) as sse:
                assert sse.status_code == 200
                assert sse.headers["access-control-allow-origin"] == allowed
                assert sse.headers["access-control-allow-credentials"] == "true"
            # A cross-site form can POST with the cookie but not as JSON (that needs a
            # preflight, refused for this origin): the hub publishes JSON bodies only.
            forged = await http.post(
                "/api/v1/publish",
                content=json.dumps({"channel": "news", "data": "forged"}),
                headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
            )
            assert forged.status_code == 415
            preflight = await http.options(
                "/api/v1/publish",
                headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert "access-control-allow-origin" not in preflight.headers
            history = await http.get("/api/v1/channels/news/history")
            assert history.json()["events"] == []
