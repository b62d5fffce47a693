"""Webhook rules with plain values: who wants an event, what an answer means, ids, secrets."""

from __future__ import annotations

import random

import pytest

from tidings.core.events import Event
from tidings.webhooks.guard import AddressRefused, check_url, resolve_allowed
from tidings.webhooks.model import Delivery, Endpoint, delivery_key, judge, retry_after

EVENT = Event.from_dict(
    {
        "id": "e1-5",
        "channel": "orders:1",
        "type": "created",
        "data": 1,
        "timestamp": "2026-12-04T10:00:00.000Z",
    }
)
SCHEDULE = (5.0, 300.0, 1800.0)


def _delivery(attempts: int = 0) -> Delivery:
    return Delivery("k", "ep", EVENT.to_dict(), created_at=0.0, attempts=attempts)


def test_an_endpoint_wants_its_channels_types_and_tenant_only() -> None:
    endpoint = Endpoint("ep", "https://x", channels=("orders:*",), types=("created",))
    assert endpoint.wants(EVENT)
    assert not Endpoint("ep", "https://x", channels=("users:*",)).wants(EVENT)
    assert not Endpoint("ep", "https://x", types=("paid",)).wants(EVENT)
    assert not Endpoint("ep", "https://x", enabled=False).wants(EVENT)
    assert not Endpoint("ep", "https://x", tenant="acme").wants(EVENT)
    assert Endpoint("ep", "https://x").wants(EVENT)


def test_answers_decide_the_delivery() -> None:
    rng = random.Random(1)
    done = judge(_delivery(), now=100.0, status=204, schedule=SCHEDULE, rng=rng)
    assert (done.delivery.status, done.delivery.attempts, done.disable) == ("delivered", 1, None)
    gone = judge(_delivery(), now=100.0, status=410, schedule=SCHEDULE, rng=rng)
    assert (gone.delivery.status, gone.disable) == ("failed", "gone")
    retry = judge(_delivery(), now=100.0, status=500, body="x" * 2000, schedule=SCHEDULE, rng=rng)
    assert retry.delivery.status == "pending"
    assert 100 + 4.5 <= (retry.delivery.next_at or 0) <= 100 + 5.5  # 5 s ± 10 %
    assert len(retry.delivery.last_body) == 500
    later = judge(_delivery(2), now=100.0, status=None, error="timeout", schedule=SCHEDULE, rng=rng)
    assert 100 + 1620 <= (later.delivery.next_at or 0) <= 100 + 1980
    spent = judge(_delivery(3), now=100.0, status=500, schedule=SCHEDULE, rng=rng)
    assert (spent.delivery.status, spent.delivery.attempts) == ("failed", 4)
    busy = judge(_delivery(), now=100.0, status=429, retry_after_s=60.0, schedule=SCHEDULE)
    assert busy.delivery.next_at == 160.0
    assert len(judge(_delivery(), now=1, status=500, schedule=SCHEDULE).delivery.history) == 1


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120", now=0) == 120.0
    assert retry_after("9999999", now=0) == 24 * 3600.0
    assert retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=0) == 60.0
    assert retry_after("soon", now=0) is None
    assert retry_after(None, now=0) is None


def test_delivery_keys_are_stable_and_sort_by_time() -> None:
    body = EVENT.to_dict()
    assert delivery_key("ep", body) == delivery_key("ep", dict(body))
    assert delivery_key("ep", body) != delivery_key("other", body)
    later = {**body, "id": "e1-6", "timestamp": "2026-12-04T10:00:01.000Z"}
    assert delivery_key("ep", later) > delivery_key("ep", body)
    assert delivery_key("ep", body).replace("_", "").isalnum()


def test_rotation_keeps_the_old_secret_for_the_overlap() -> None:
    endpoint = Endpoint("ep", "https://x", secrets=(("old", None),))
    rotated = endpoint.rotated("new", now=100.0, overlap=50.0)
    assert rotated.signing_secrets(120.0) == ["new", "old"]
    assert rotated.signing_secrets(151.0) == ["new"]
    assert Endpoint.loads(rotated.dumps()) == rotated
    assert "secrets" not in rotated.public()


async def test_internal_addresses_are_refused_unless_allowed() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://169.254.169.254/",
        "http://[::1]:8080/",
        "http://[::ffff:192.168.0.1]/",
        "http://localhost/",
    ):
        with pytest.raises(AddressRefused):
            await resolve_allowed(url, allow_private=False)
        await resolve_allowed(url, allow_private=True)
    await resolve_allowed("http://8.8.8.8/", allow_private=False)
    assert check_url("https://example.com/h") == ("example.com", 443)
