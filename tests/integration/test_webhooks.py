"""Webhooks (SPEC §9) against a real receiver: signed per Standard Webhooks (checked with
the `standardwebhooks` package, which we did not write), retried with backoff, Retry-After
honoured, 410 disabling, timeouts, isolation of a slow endpoint, rotation, replay, rights,
a SIGKILL with deliveries pending on SQLite, and two Redis nodes delivering once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from standardwebhooks import Webhook

from tests.redis_support import delete_prefix, redis_url, unique_prefix, with_options
from tests.servers import running_hub, start_process, without_node_label
from tests.webhook_receiver import receiving
from tidings.auth.tokens import mint_token
from tidings.webhooks import verify

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = {"webhook_allow_private": True, "webhook_retry_schedule": (0.05, 0.05, 0.05)}


async def _register(http: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    answer = await http.post("/api/v1/webhooks", json={"url": url, **fields})
    assert answer.status_code == 201, answer.text
    endpoint: dict[str, Any] = answer.json()
    return endpoint


async def _deliveries(http: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    answer = await http.get(f"/api/v1/webhooks/{endpoint_id}/deliveries")
    assert answer.status_code == 200
    found: list[dict[str, Any]] = answer.json()["deliveries"]
    return found


async def _until(check: Any, timeout: float = 10) -> Any:
    """Poll an API until ``check()`` returns something truthy (the hub has no event for
    'a delivery record was written'; the receiver's arrivals are awaited directly)."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    return result


async def test_a_delivery_is_signed_as_standard_webhooks_says() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            endpoint = await _register(
                http, receiver.url("/ok"), channels=["orders:*"], types=["created"], secret=SECRET
            )
            assert endpoint["secret"] == SECRET
            assert "secret" not in (
                await http.get(f"/api/v1/webhooks/{endpoint['id']}")
            ).json() or (
                (await http.get(f"/api/v1/webhooks/{endpoint['id']}")).json().get("secret") is None
            )
            for channel, kind in (
                ("orders:1", "created"),
                ("orders:1", "paid"),
                ("other", "created"),
            ):
                await http.post(
                    "/api/v1/publish", json={"channel": channel, "type": kind, "data": {"n": 1}}
                )
            published = await http.post(
                "/api/v1/publish", json={"channel": "orders:2", "type": "created", "data": 2}
            )
            first, second = await receiver.wait("/ok", 2)
            for arrival in (first, second):
                Webhook(SECRET).verify(arrival.body, arrival.headers)  # the reference library
                verify(SECRET, arrival.headers, arrival.body)  # and ours
            body = json.loads(second.body)
            assert body["type"] == "created" and body["data"] == published.json()
            assert body["timestamp"] == published.json()["timestamp"]
            assert second.headers["webhook-id"].startswith("msg_")
            deliveries = await _until(lambda: _delivered(http, endpoint["id"], 2))
            assert {d["status"] for d in deliveries} == {"delivered"}
            assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in deliveries)
            assert len(receiver.arrivals["/ok"]) == 2  # nothing else matched
            metrics = without_node_label((await http.get("/metrics")).text)
            assert 'tidings_webhook_deliveries_total{outcome="delivered"} 2.0' in metrics
            assert "tidings_webhook_delivery_seconds_count 2.0" in metrics
            assert "tidings_webhook_outbox " in metrics


async def _delivered(http: httpx.AsyncClient, endpoint_id: str, count: int) -> Any:
    found = [d for d in await _deliveries(http, endpoint_id) if d["status"] != "pending"]
    return found if len(found) >= count else None


async def test_failures_are_retried_with_the_same_id_until_delivered() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            endpoint = await _register(http, receiver.url("/flaky/2"))
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            attempts = await receiver.wait("/flaky/2", 3)
            assert len({a.headers["webhook-id"] for a in attempts}) == 1
            (delivery,) = await _until(lambda: _delivered(http, endpoint["id"], 1))
            assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
            assert [h["status"] for h in delivery["history"]] == [500, 500, 200]


async def test_retry_after_is_honoured_on_429() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            await _register(http, receiver.url("/busy"))
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            first, second = await receiver.wait("/busy", 2)
            # The schedule says 0.05 s; the receiver said 1 s.
            assert second.at - first.at >= 0.95


async def test_a_failing_receiver_exhausts_the_schedule_and_410_disables() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            # Only "c": the webhook.disabled event (on "webhooks") is not theirs.
            failing = await _register(http, receiver.url("/error"), channels=["c"])
            gone = await _register(http, receiver.url("/gone"), channels=["c"])
            ws = await websockets.connect(f"{hub.ws_url}/ws?channel=webhooks")
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            await receiver.wait("/error", 4)  # the first attempt and three retries
            (delivery,) = await _until(lambda: _delivered(http, failing["id"], 1))
            assert (delivery["status"], delivery["attempts"]) == ("failed", 4)
            assert delivery["last_status"] == 500 and "boom" in delivery["last_body"]
            async with asyncio.timeout(10):
                while (message := json.loads(await ws.recv()))["type"] != "event":
                    pass
            assert message["data"]["type"] == "webhook.disabled"
            assert message["data"]["data"] == {
                "endpoint_id": gone["id"],
                "url": gone["url"],
                "reason": "gone",
            }
            shown = (await http.get(f"/api/v1/webhooks/{gone['id']}")).json()
            assert (shown["enabled"], shown["disabled_reason"]) == (False, "gone")
            await ws.close()
            # Enabled again, it gets what is published from then on.
            patched = await http.patch(f"/api/v1/webhooks/{gone['id']}", json={"enabled": True})
            assert patched.json()["enabled"] is True and patched.json()["disabled_reason"] is None


async def test_a_slow_endpoint_does_not_delay_a_fast_one_or_publishing() -> None:
    settings = {**FAST, "webhook_timeout": 30.0}
    async with receiving() as receiver, running_hub(**settings) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            await _register(http, receiver.url("/slow"))
            await _register(http, receiver.url("/ok"))
            started = time.monotonic()
            for n in range(20):
                answer = await http.post("/api/v1/publish", json={"channel": "c", "data": n})
                assert answer.status_code == 201
            fast = await receiver.wait("/ok", 20, timeout=5)
            assert sorted(json.loads(a.body)["data"]["data"] for a in fast) == list(range(20))
            assert time.monotonic() - started < 5
            # The slow one holds at most its per-endpoint share of requests.
            assert len(receiver.arrivals["/slow"]) <= 4
            receiver.release.set()
            await receiver.wait("/slow", 20, timeout=10)


async def test_timeouts_are_failed_attempts() -> None:
    settings = {**FAST, "webhook_timeout": 0.3, "webhook_retry_schedule": (0.05,)}
    async with receiving() as receiver, running_hub(**settings) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            endpoint = await _register(http, receiver.url("/slow"))
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            (delivery,) = await _until(lambda: _delivered(http, endpoint["id"], 1))
            assert (delivery["status"], delivery["attempts"]) == ("failed", 2)
            assert delivery["last_error"] == "timeout"


async def test_rotation_signs_with_both_secrets_during_the_overlap() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            endpoint = await _register(http, receiver.url("/ok"), secret=SECRET)
            rotated = await http.patch(
                f"/api/v1/webhooks/{endpoint['id']}", json={"rotate_secret": True}
            )
            new_secret = rotated.json()["secret"]
            assert new_secret.startswith("whsec_") and new_secret != SECRET
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            (arrival,) = await receiver.wait("/ok", 1)
            assert len(arrival.headers["webhook-signature"].split()) == 2
            for secret in (SECRET, new_secret):
                Webhook(secret).verify(arrival.body, arrival.headers)


async def test_replay_test_event_and_delete() -> None:
    async with receiving() as receiver, running_hub(**FAST) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            endpoint = await _register(http, receiver.url("/ok"))
            await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            (first,) = await receiver.wait("/ok", 1)
            (delivery,) = await _until(lambda: _delivered(http, endpoint["id"], 1))
            replay = await http.post(
                f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/retry"
            )
            assert replay.status_code == 202
            _, again = await receiver.wait("/ok", 2)
            assert again.headers["webhook-id"] == first.headers["webhook-id"]
            test = await http.post(f"/api/v1/webhooks/{endpoint['id']}/test")
            assert test.status_code == 202
            *_, probe = await receiver.wait("/ok", 3)
            assert json.loads(probe.body)["type"] == "webhook.test"
            missing = await http.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/nope/retry")
            assert missing.status_code == 404
            assert (await http.delete(f"/api/v1/webhooks/{endpoint['id']}")).status_code == 204
            assert (await http.get(f"/api/v1/webhooks/{endpoint['id']}")).status_code == 404


async def test_private_addresses_rights_and_tenants() -> None:
    secret = "webhooks-secret-that-is-long-enough-for-hs256"
    async with running_hub(jwt_secret=secret) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            admin = {"Authorization": "Bearer " + mint_token(secret, sub="ops", admin=True)}
            refused = await http.post(
                "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=admin
            )
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "address_not_allowed"
            for url in ("ftp://example.com/", "http://user:pw@example.com/", "not a url"):
                bad = await http.post("/api/v1/webhooks", json={"url": url}, headers=admin)
                assert bad.status_code == 400, url
            user = {"Authorization": "Bearer " + mint_token(secret, sub="u", channels=["*"])}
            assert (await http.get("/api/v1/webhooks", headers=user)).status_code == 403
            assert (await http.get("/api/v1/webhooks")).status_code == 401
            acme = {
                "Authorization": "Bearer " + mint_token(secret, sub="a", admin=True, tenant="acme")
            }
            made = await http.post(
                "/api/v1/webhooks", json={"url": "https://example.com/h"}, headers=acme
            )
            assert made.status_code == 201 and made.json()["tenant"] == "acme"
            other = {
                "Authorization": "Bearer " + mint_token(secret, sub="b", admin=True, tenant="other")
            }
            assert (await http.get("/api/v1/webhooks", headers=other)).json() == {"webhooks": []}
            hidden = await http.get(f"/api/v1/webhooks/{made.json()['id']}", headers=other)
            assert hidden.status_code == 404


async def test_sigkill_with_deliveries_pending_loses_nothing_on_sqlite(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tidings.db'}"
    retries = [arg for _ in range(20) for arg in ("--webhook-retry", "0.2")]
    args = ("--store", store, "--webhook-allow-private", "--webhook-timeout", "2", *retries)
    async with receiving() as receiver:
        receiver.failing = True  # every attempt fails until the hub has been killed
        node = start_process(*args, "--log-level", "warning")
        try:
            with httpx.Client(base_url=node.url) as http:
                endpoint = http.post(
                    "/api/v1/webhooks", json={"url": receiver.url("/h"), "secret": SECRET}
                ).json()
                ids = [
                    http.post("/api/v1/publish", json={"channel": "c", "data": n}).json()["id"]
                    for n in range(20)
                ]

            def tried() -> dict[str, str]:
                return {
                    json.loads(a.body)["data"]["id"]: a.headers["webhook-id"]
                    for a in receiver.arrivals["/h"]
                }

            await receiver.until(lambda: set(tried()) == set(ids))
            before = tried()
        finally:
            node.stop(signal.SIGKILL)  # with deliveries pending, some of them claimed
            node.close()
        receiver.failing = False
        attempts_before = len(receiver.arrivals["/h"])
        node = start_process(*args, "--log-level", "warning")
        try:

            def delivered() -> dict[str, str]:
                return {
                    json.loads(a.body)["data"]["id"]: a.headers["webhook-id"]
                    for a in receiver.arrivals["/h"][attempts_before:]
                }

            await receiver.until(lambda: set(delivered()) == set(ids), timeout=30)
            assert delivered() == before  # the same webhook-id for each event, across the kill
            for arrival in receiver.arrivals["/h"]:
                Webhook(SECRET).verify(arrival.body, arrival.headers)
            async with httpx.AsyncClient(base_url=node.url) as http:
                done = await _until(lambda: _delivered(http, endpoint["id"], 20), timeout=30)
                assert {d["status"] for d in done} == {"delivered"}
                assert {d["message_id"] for d in done} == set(before.values())
        finally:
            node.stop()
            node.close()


@pytest.mark.redis
async def test_two_redis_nodes_deliver_each_event_once_per_endpoint() -> None:
    base = redis_url()
    prefix = unique_prefix()
    url = with_options(base, prefix=prefix)
    args = ("--broker", url, "--store", url, "--webhook-allow-private", "--log-level", "warning")
    a, b = start_process(*args), start_process(*args)
    try:
        async with receiving() as receiver, httpx.AsyncClient() as http:
            made = await http.post(a.url + "/api/v1/webhooks", json={"url": receiver.url("/ok")})
            assert made.status_code == 201
            # Node B hears of it through the broker; reading the list there waits for it.
            listed = await http.get(b.url + "/api/v1/webhooks")
            assert [e["id"] for e in listed.json()["webhooks"]] == [made.json()["id"]]
            await http.post(b.url + "/api/v1/publish", json={"channel": "warmup", "data": 0})
            await receiver.wait("/ok", 1)
            for n in range(30):
                node = a if n % 2 else b
                await http.post(node.url + "/api/v1/publish", json={"channel": "c", "data": n})
            await receiver.wait("/ok", 31, timeout=20)
            deliveries = await _until(
                lambda: _delivered_any(http, a.url, made.json()["id"], 31), timeout=20
            )
            assert len(deliveries) == 31
            ids = [a_.headers["webhook-id"] for a_ in receiver.arrivals["/ok"]]
            assert len(ids) == len(set(ids)) == 31
    finally:
        for node in (a, b):
            node.stop()
            node.close()
        await delete_prefix(base, prefix)


async def _delivered_any(http: httpx.AsyncClient, base: str, endpoint_id: str, count: int) -> Any:
    answer = await http.get(f"{base}/api/v1/webhooks/{endpoint_id}/deliveries")
    found = [d for d in answer.json()["deliveries"] if d["status"] == "delivered"]
    return found if len(found) >= count else None


async def test_an_endpoint_failing_too_long_or_too_far_behind_is_disabled() -> None:
    settings = {
        **FAST,
        "webhook_disable_after": 0.3,
        "webhook_retry_schedule": (0.1,) * 50,
        "webhook_queue_size": 3,
        "webhook_timeout": 30.0,
    }
    async with receiving() as receiver, running_hub(**settings) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as http:
            failing = await _register(http, receiver.url("/error"), channels=["a"])
            behind = await _register(http, receiver.url("/slow"), channels=["b"])
            ws = await websockets.connect(f"{hub.ws_url}/ws?channel=webhooks")
            await http.post("/api/v1/publish", json={"channel": "a", "data": 1})
            # The slow receiver holds its first requests; what comes next piles up.
            for n in range(10):
                answer = await http.post("/api/v1/publish", json={"channel": "b", "data": n})
                assert answer.status_code == 201  # publishing never waits for a receiver
            reasons = {}
            async with asyncio.timeout(10):
                while len(reasons) < 2:
                    message = json.loads(await ws.recv())
                    if message["type"] == "event":
                        data = message["data"]["data"]
                        reasons[data["endpoint_id"]] = data["reason"]
            assert reasons == {failing["id"]: "failing", behind["id"]: "backlog_full"}
            metrics = without_node_label((await http.get("/metrics")).text)
            assert 'tidings_webhook_deliveries_total{outcome="dropped"}' in metrics
            await ws.close()
