"""Tenant isolation as a property (#17.3): random tokens against every channel of a small
universe, on every way in, compared with a model of the rules written here from the
documentation (docs/security.md: patterns, tenants, the personal channel, admin).

The model is a pure function of a token's claims and a channel. The hub answers over
real sockets: one hub per stream path for the whole module, so that each example costs
requests, not a server start. Every example uses fresh names (a nonce) where state is
left behind (scheduled keys, events), and removes what it registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.servers import RunningHub, running_hub
from tidings.auth.tokens import mint_token

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "isolation-secret-that-is-long-enough-for-hs256"
API_KEY = "isolation-api-key-0123456789abcdef"
KEY = {"Authorization": f"Bearer {API_KEY}"}

TENANTS = ("a", "b", "ab")
#: Channels of three tenants (one a prefix of another's name), of no tenant, and personal
#: channels of client u1 in and out of tenants.
UNIVERSE = (
    "x",
    "news",
    "client:u1",
    "tenant:a/x",
    "tenant:a/y",
    "tenant:a/client:u1",
    "tenant:ab/x",
    "tenant:b/x",
    "tenant:b/client:u1",
)
#: Patterns that reach across tenants when tenants are not applied, or only by a prefix.
PATTERNS = (
    "*",
    "x",
    "client:*",
    "tenant:*",
    "tenant:a*",
    "tenant:a/*",
    "tenant:a/x",
    "tenant:ab/*",
    "tenant:b/*",
    "tenant:?/x",
    "tenant:[ab]/*",
    "*/x",
    "*client:u1",
)

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    # No shrinking: an example is already a handful of claims, and shrinking one that
    # fails costs minutes of requests. The first failure is reported as drawn.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
    # The hub is the module's, and the autouse stream_path fixture is the same for every
    # example of a test: nothing function-scoped is reused stale.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Claims:
    """A token's claims, and the model: what the documentation says they allow."""

    sub: str
    tenant: str | None
    channels: tuple[str, ...]
    publish: tuple[str, ...]
    admin: bool

    def token(self) -> str:
        return mint_token(
            SECRET,
            sub=self.sub,
            tenant=self.tenant,
            channels=self.channels,
            publish=self.publish,
            admin=self.admin,
        )

    @property
    def personal(self) -> str:
        prefix = "" if self.tenant is None else f"tenant:{self.tenant}/"
        return f"{prefix}client:{self.sub}"

    def in_tenant(self, channel: str) -> bool:
        return self.tenant is None or channel.startswith(f"tenant:{self.tenant}/")

    def may_read(self, channel: str) -> bool:
        """Subscribe (SSE, WebSocket) and read history."""
        if channel == self.personal:
            return True
        return self.in_tenant(channel) and any(fnmatchcase(channel, p) for p in self.channels)

    def may_write(self, channel: str) -> bool:
        """Publish (HTTP, WebSocket), schedule, and see or cancel schedules."""
        return self.in_tenant(channel) and any(fnmatchcase(channel, p) for p in self.publish)

    def may_administer(self, channel: str) -> bool:
        """Admin views of a channel (presence)."""
        return self.admin and self.in_tenant(channel)

    def sees_endpoint_of(self, tenant: str | None) -> bool:
        """Whether a webhook endpoint registered in ``tenant`` is this admin's."""
        return self.admin and (self.tenant is None or self.tenant == tenant)


claims_strategy = st.builds(
    Claims,
    sub=st.sampled_from(("u1", "u2")),
    tenant=st.sampled_from((None, *TENANTS)),
    channels=st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True).map(tuple),
    publish=st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True).map(tuple),
    admin=st.booleans(),
)


Hubs = Callable[[str], Awaitable[RunningHub]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hubs() -> AsyncIterator[Hubs]:
    """One secured hub per stream path, started when a test first asks for it."""
    started: dict[str, RunningHub] = {}
    async with contextlib.AsyncExitStack() as stack:

        async def hub(path: str) -> RunningHub:
            if path not in started:
                started[path] = await stack.enter_async_context(
                    running_hub(
                        jwt_secret=SECRET,
                        api_keys={"service": API_KEY},
                        data_plane=path,
                        webhook_allow_private=True,  # endpoints on loopback, never reached
                        connection_rate=1_000_000,  # every example connects from 127.0.0.1
                    )
                )
            return started[path]

        yield hub


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _publish_probes(http: httpx.AsyncClient, nonce: str, end: str) -> None:
    """One ``probe`` event on every channel of the universe, then ``end`` on ``end``: the
    events of one batch reach a subscriber in order, so ``end`` closes the observation."""
    events = [{"channel": c, "type": "probe", "data": nonce} for c in UNIVERSE]
    events.append({"channel": end, "type": "end", "data": nonce})
    answer = await http.post("/api/v1/publish", json={"events": events}, headers=KEY)
    assert answer.status_code == 201, answer.text


async def _ws_replies(ws: websockets.ClientConnection, ids: set[str]) -> dict[str, Any]:
    replies: dict[str, Any] = {}
    async with asyncio.timeout(10):
        while ids - replies.keys():
            message = json.loads(await ws.recv())
            if message.get("id") in ids:
                replies[message["id"]] = message
    return replies


def _verdict(reply: dict[str, Any], ok: str) -> bool:
    """True for the ``ok`` reply, False for ``forbidden``; anything else fails the test."""
    if reply["type"] == "error":
        assert reply["code"] == "forbidden", reply
        return False
    assert reply["type"] == ok, reply
    return True


async def _received_by_ws(ws: websockets.ClientConnection, nonce: str) -> set[str]:
    channels: set[str] = set()
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] != "event" or message["data"]["data"] != nonce:
                continue
            if message["data"]["type"] == "end":
                return channels
            channels.add(message["data"]["channel"])


async def _received_by_sse(lines: AsyncIterator[str], nonce: str) -> set[str]:
    channels: set[str] = set()
    async with asyncio.timeout(10):
        async for line in lines:
            if not line.startswith("data: {"):
                continue
            event = json.loads(line.removeprefix("data: "))
            if event.get("data") != nonce:
                continue
            if event["type"] == "end":
                return channels
            channels.add(event["channel"])
    raise AssertionError("the SSE stream ended before the end of the probes")


@pytest.mark.streams
@EXAMPLES
@given(claims=claims_strategy)
async def test_streams_reach_only_what_the_token_allows(
    hubs: Hubs, stream_path: str, claims: Claims
) -> None:
    """SSE and WebSocket subscribe, WebSocket publish, and what subscribers receive."""
    hub = await hubs(stream_path)
    token = claims.token()
    nonce = secrets.token_hex(6)
    readable = {c for c in UNIVERSE if claims.may_read(c)}
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        # SSE admission, one channel at a time.
        for channel in UNIVERSE:
            url = f"/api/v1/events?channel={channel}"
            async with http.stream("GET", url, headers=_bearer(token)) as response:
                if claims.may_read(channel):
                    assert response.status_code == 200, channel
                else:
                    assert response.status_code == 403, channel
                    body = json.loads(await response.aread())
                    assert body["error"]["code"] == "forbidden"

        async with websockets.connect(f"{hub.ws_url}/ws?token={token}") as ws:
            async with asyncio.timeout(10):
                assert json.loads(await ws.recv())["type"] == "connected"
            for i, channel in enumerate(UNIVERSE):
                await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": f"s{i}"}))
                await ws.send(
                    json.dumps(
                        {
                            "type": "publish",
                            "channel": channel,
                            "event": "ws_probe",
                            "data": nonce,
                            "id": f"p{i}",
                        }
                    )
                )
            ids = {f"{kind}{i}" for kind in "sp" for i in range(len(UNIVERSE))}
            replies = await _ws_replies(ws, ids)
            for i, channel in enumerate(UNIVERSE):
                subscribed = _verdict(replies[f"s{i}"], "subscribed")
                assert subscribed == claims.may_read(channel), (channel, replies[f"s{i}"])
                published = _verdict(replies[f"p{i}"], "published")
                assert published == claims.may_write(channel), (channel, replies[f"p{i}"])

            # What arrives: exactly the readable channels, on both transports.
            query = "&".join(f"channel={c}" for c in sorted(readable - {claims.personal}))
            sse_url = f"/api/v1/events?{query}"
            async with http.stream("GET", sse_url, headers=_bearer(token)) as sse:
                assert sse.status_code == 200
                lines = sse.aiter_lines()
                async with asyncio.timeout(10):
                    async for line in lines:  # subscribed once the position is set
                        if line.startswith("event: position"):
                            break
                await _publish_probes(http, nonce, end=claims.personal)
                assert await _received_by_sse(lines, nonce) == readable
            assert await _received_by_ws(ws, nonce) == readable


async def _status(response: httpx.Response, allowed: int, *refusals: str) -> bool:
    """True for ``allowed``; False for 403 with one of ``refusals``; else the test fails."""
    if response.status_code == allowed:
        return True
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] in refusals, response.text
    return False


@EXAMPLES
@given(claims=claims_strategy)
async def test_http_api_reaches_only_what_the_token_allows(hubs: Hubs, claims: Claims) -> None:
    """Publish, history, presence, scheduled events and webhooks over the HTTP API."""
    hub = await hubs("native")  # the HTTP API is the same application on both paths
    mine = _bearer(claims.token())
    nonce = secrets.token_hex(6)
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        # Webhook endpoints of every tenant and of none, registered before the probes.
        registered: dict[str, str | None] = {}
        for tenant in (None, *TENANTS):
            owner = KEY if tenant is None else _bearer(_admin_of(tenant))
            created = await http.post(
                "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=owner
            )
            assert created.status_code == 201, created.text
            assert created.json()["tenant"] == tenant
            registered[created.json()["id"]] = tenant
        try:
            await _check_webhooks(http, claims, mine, registered)
            await _publish_probes(http, nonce, end="x")
            await _check_deliveries(http, registered, nonce)
        finally:
            for endpoint in registered:
                gone = await http.delete(f"/api/v1/webhooks/{endpoint}", headers=KEY)
                assert gone.status_code == 204

        for channel in UNIVERSE:
            published = await http.post(
                "/api/v1/publish", json={"channel": channel, "data": nonce}, headers=mine
            )
            assert await _status(published, 201, "forbidden") == claims.may_write(channel)

            history = await http.get(f"/api/v1/channels/{channel}/history", headers=mine)
            assert await _status(history, 200, "forbidden") == claims.may_read(channel)
            if history.status_code == 200:
                assert {e["channel"] for e in history.json()["events"]} <= {channel}

            presence = await http.get(f"/api/v1/channels/{channel}/presence", headers=mine)
            refusal = "forbidden" if claims.admin else "admin_required"
            assert await _status(presence, 200, refusal) == claims.may_administer(channel)

        await _check_batch(http, claims, mine, nonce)
        await _check_scheduled(http, claims, mine, nonce)


async def _check_batch(
    http: httpx.AsyncClient, claims: Claims, mine: dict[str, str], nonce: str
) -> None:
    """A batch is published whole or not at all: one channel outside the token's rights
    refuses every event of it."""
    writable = [c for c in UNIVERSE if claims.may_write(c)]
    stray = next((c for c in UNIVERSE if not claims.may_write(c)), None)
    batch = [*writable, *([stray] if stray is not None else [])]
    marker = f"{nonce}-batch"
    events = [{"channel": c, "data": marker} for c in batch]
    answer = await http.post("/api/v1/publish", json={"events": events}, headers=mine)
    assert await _status(answer, 201, "forbidden") == (stray is None)
    for channel in batch:
        history = await http.get(f"/api/v1/channels/{channel}/history", headers=KEY)
        found = [e for e in history.json()["events"] if e["data"] == marker]
        assert len(found) == (1 if stray is None else 0), (channel, found)


def _admin_of(tenant: str) -> str:
    return mint_token(SECRET, sub="ops", tenant=tenant, admin=True)


async def _check_webhooks(
    http: httpx.AsyncClient,
    claims: Claims,
    mine: dict[str, str],
    registered: dict[str, str | None],
) -> None:
    listed = await http.get("/api/v1/webhooks", headers=mine)
    if not claims.admin:
        assert listed.status_code == 403
        assert listed.json()["error"]["code"] == "admin_required"
        return
    assert listed.status_code == 200
    seen = {e["id"] for e in listed.json()["webhooks"]}
    for endpoint, tenant in registered.items():
        assert (endpoint in seen) == claims.sees_endpoint_of(tenant), (endpoint, tenant)
        for path in ("", "/deliveries"):
            answer = await http.get(f"/api/v1/webhooks/{endpoint}{path}", headers=mine)
            expected = 200 if claims.sees_endpoint_of(tenant) else 404
            assert answer.status_code == expected, (path, tenant, answer.text)
    # What an admin registers is in its own tenant, and only an admin of that tenant
    # (or of every tenant) can remove it.
    created = await http.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/own"}, headers=mine
    )
    assert created.status_code == 201
    assert created.json()["tenant"] == claims.tenant
    registered[created.json()["id"]] = claims.tenant
    for endpoint, tenant in registered.items():
        if not claims.sees_endpoint_of(tenant):
            at = f"/api/v1/webhooks/{endpoint}"
            for refused in (
                await http.patch(at, json={"channels": ["*"]}, headers=mine),
                await http.post(f"{at}/test", headers=mine),
                await http.post(f"{at}/deliveries/any/retry", headers=mine),
                await http.delete(at, headers=mine),
            ):
                assert refused.status_code == 404, (refused.request.url, refused.text)
                assert refused.json()["error"]["code"] == "webhook_not_found"


async def _check_deliveries(
    http: httpx.AsyncClient, registered: dict[str, str | None], nonce: str
) -> None:
    """Each endpoint was handed exactly the probes of its tenant's channels."""
    for endpoint, tenant in registered.items():
        answer = await http.get(f"/api/v1/webhooks/{endpoint}/deliveries", headers=KEY)
        got = {
            d["event"]["channel"]
            for d in answer.json()["deliveries"]
            if d["event"]["data"] == nonce and d["event"]["type"] == "probe"
        }
        prefix = "" if tenant is None else f"tenant:{tenant}/"
        assert got == {c for c in UNIVERSE if c.startswith(prefix)}, (tenant, got)


async def _check_scheduled(
    http: httpx.AsyncClient, claims: Claims, mine: dict[str, str], nonce: str
) -> None:
    """Scheduling into a channel, listing schedules, replacing and cancelling them."""
    theirs = {c: f"{nonce}-svc-{i}" for i, c in enumerate(UNIVERSE)}
    for channel, key in theirs.items():
        made = await http.post(
            "/api/v1/publish",
            json={"channel": channel, "data": 1, "delay_s": 3600, "key": key},
            headers=KEY,
        )
        assert made.status_code == 202, made.text
    mine_to = next((c for c in UNIVERSE if claims.may_write(c)), None)
    try:
        for i, channel in enumerate(UNIVERSE):
            scheduled = await http.post(
                "/api/v1/publish",
                json={"channel": channel, "data": 1, "delay_s": 3600, "key": f"{nonce}-{i}"},
                headers=mine,
            )
            assert await _status(scheduled, 202, "forbidden") == claims.may_write(channel)

            listed = await http.get(f"/api/v1/scheduled?channel={channel}", headers=mine)
            assert await _status(listed, 200, "forbidden") == claims.may_write(channel)
            if listed.status_code == 200:
                assert {e["channel"] for e in listed.json()["scheduled"]} == {channel}

            # Another channel's schedule may not be replaced through a channel one may
            # publish to: the key names it, the rights are the channel's.
            if mine_to is not None:
                replaced = await http.post(
                    "/api/v1/publish",
                    json={"channel": mine_to, "data": 2, "delay_s": 3600, "key": theirs[channel]},
                    headers=mine,
                )
                assert await _status(replaced, 202, "forbidden") == claims.may_write(channel)

        everything = await http.get("/api/v1/scheduled", headers=mine)
        if claims.admin:
            assert everything.status_code == 200
            seen = {e["channel"] for e in everything.json()["scheduled"]}
            assert seen == {c for c in UNIVERSE if claims.in_tenant(c)}, seen
        else:
            assert everything.status_code == 403

        for channel, key in theirs.items():
            cancelled = await http.delete(f"/api/v1/scheduled/{key}", headers=mine)
            # Another tenant's schedule is as absent (its channel is never named); one
            # of the caller's tenant without the right to publish there is forbidden.
            if claims.may_write(channel):
                expected = 204  # where it is now: its channel, or the one it replaced
            else:
                expected = 403 if claims.in_tenant(channel) else 404
            assert cancelled.status_code == expected, (channel, cancelled.text)
            if expected == 404:
                assert f"'{channel}'" not in cancelled.text
    finally:
        pending = await http.get("/api/v1/scheduled", headers=KEY)
        for entry in pending.json()["scheduled"]:
            await http.delete(f"/api/v1/scheduled/{entry['key']}", headers=KEY)
