"""Webhooks: endpoints, the durable outbox of deliveries, and the workers that send them.

* **Enqueue.** After a publish is stored, and before it is acknowledged, each event is
  put in the outbox of every endpoint that wants it, under a key made from the event and
  the endpoint: a replayed publish (same idempotency key, a scheduled event fired twice,
  an outbox row published again) finds the delivery there and adds nothing. So every
  acknowledged event has its deliveries recorded, in the store's own durability.
* **Send.** Each node runs one worker per enabled endpoint. It claims due deliveries
  under a lease (no other node sends them meanwhile), POSTs each signed per Standard
  Webhooks, and records the outcome: delivered, retried later, or failed. A node that
  dies mid-attempt loses nothing: the lease runs out and another node sends it again,
  with the same ``webhook-id``.
* **Isolation.** An endpoint's worker only waits on its own receiver; at most
  ``webhook_endpoint_concurrency`` requests per endpoint and ``webhook_concurrency`` in
  all are in flight; publishing never waits for a receiver. An endpoint whose outbox is
  full, that answers 410, or that has failed for ``webhook_disable_after`` is disabled,
  and a ``webhook.disabled`` event is published on ``webhooks`` (or its tenant's
  ``tenant:<t>/webhooks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import httpx

from tidings.backends.base import Records, backend_failure
from tidings.core.events import Event, now_timestamp
from tidings.errors import LimitExceeded, NotFound, TidingsError
from tidings.settings import Settings
from tidings.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, generate_secret, sign
from tidings.tasks import cancel_and_wait
from tidings.webhooks.guard import AddressRefused, check_url, resolve_allowed
from tidings.webhooks.model import (
    Delivery,
    Endpoint,
    body_of,
    delivery_key,
    judge,
    new_endpoint_id,
    retry_after,
)

__all__ = ["WebhookService"]

log = logging.getLogger("tidings.webhooks")

ENDPOINTS = "wh:endpoints"
#: Delivered and failed deliveries kept per endpoint, for ``…/deliveries``.
KEEP_FINISHED = 200
#: How often workers look for work other nodes enqueued, and for endpoint changes, s.
POLL = 1.0
#: Bucket bounds of the delivery latency histogram, s.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

Publish = Callable[[str, str, Any], Awaitable[Any]]


def _outbox(endpoint_id: str) -> str:
    return f"wh:d:{endpoint_id}"


class WebhookService:
    """The webhooks of one hub node; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        records: Records,
        publish: Publish,
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.records = records
        self.publish = publish
        #: Tells every node that endpoints changed (a broker control message).
        self.announce = announce
        self.endpoints: dict[str, Endpoint] = {}
        #: Attempts by outcome (``delivered``, ``retry``, ``failed``, ``dropped``).
        self.outcomes: Counter[str] = Counter()
        self._finished: dict[str, deque[str]] = {}
        #: How long attempts took: cumulative counts per bucket bound, and the sum.
        self.latency_buckets: dict[float, int] = dict.fromkeys(LATENCY_BUCKETS, 0)
        self.latency_sum = 0.0
        #: Deliveries waiting per endpoint, as last counted (every few seconds).
        self.pending: dict[str, int] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._client: httpx.AsyncClient | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        self._loaded = False
        #: Whether a publish has deliveries to record: some endpoint is enabled (or the
        #: endpoints are not read yet). Kept as endpoints change, so that publishing
        #: with no webhooks pays one attribute read.
        self.active = True

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._load()
        except Exception as exc:  # the store is down: the refresher tries again
            log.warning("webhook endpoints cannot be read: %s", type(exc).__name__)
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.settings.webhook_concurrency),
            headers={"user-agent": "tidings-webhooks"},
        )
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        tasks = [
            t for t in (self._refresher, self._reload, *self._workers.values()) if t is not None
        ]
        await cancel_and_wait(*tasks)
        self._workers.clear()
        self._refresher = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _refresh_loop(self) -> None:
        turn = 0
        while True:
            await self._load_quietly()  # the store down: tried again next time
            if turn % 5 == 0:
                await self._count_pending()
            turn += 1
            await asyncio.sleep(POLL)

    async def _count_pending(self) -> None:
        counted = {}
        for endpoint_id in list(self.endpoints):
            with contextlib.suppress(Exception):
                counted[endpoint_id] = await self.records.ready_count(_outbox(endpoint_id))
        self.pending = counted

    async def _load(self) -> None:
        """Read the endpoints (other nodes change them too) and run one worker each."""
        found = {}
        for raw in await self.records.newest(ENDPOINTS, limit=100_000):
            endpoint = Endpoint.loads(raw)
            found[endpoint.id] = endpoint
        self.endpoints = found
        self._loaded = True
        self._run_workers()

    def _run_workers(self) -> None:
        self.active = not self._loaded or any(e.enabled for e in self.endpoints.values())
        if self._client is None:
            return
        for endpoint_id, endpoint in self.endpoints.items():
            if endpoint.enabled and endpoint_id not in self._workers:
                self._wake[endpoint_id] = asyncio.Event()
                task = asyncio.get_running_loop().create_task(self._work(endpoint_id))
                self._workers[endpoint_id] = task
        for endpoint_id in list(self._workers):
            found = self.endpoints.get(endpoint_id)
            if found is None or not found.enabled:
                self._workers.pop(endpoint_id).cancel()
                self._wake.pop(endpoint_id, None)

    # -- endpoints ---------------------------------------------------------------------

    async def _save(self, endpoint: Endpoint, *, announce: bool = True) -> Endpoint:
        with backend_failure("webhook save", "webhooks cannot be stored right now"):
            await self.records.put(ENDPOINTS, endpoint.id, endpoint.dumps(), ready=None)
        self.endpoints[endpoint.id] = endpoint
        self._run_workers()
        if announce:
            await self._announce()
        return endpoint

    async def _announce(self) -> None:
        with contextlib.suppress(TidingsError):  # the others see it at their next poll
            await self.announce()

    def changed(self) -> None:
        """Another node (or this one) changed the endpoints: read them again soon."""
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._load_quietly())

    async def _load_quietly(self) -> None:
        try:
            await self._load()
        except Exception as exc:
            log.warning("webhook endpoints cannot be read: %s", type(exc).__name__)

    async def get(self, endpoint_id: str, *, tenant: str | None) -> Endpoint:
        """The endpoint, if it exists and the caller's tenant owns it."""
        with backend_failure("webhook read", "webhooks cannot be read right now"):
            raw = await self.records.get(ENDPOINTS, endpoint_id)
        endpoint = None if raw is None else Endpoint.loads(raw)
        if endpoint is None or (tenant is not None and endpoint.tenant != tenant):
            raise NotFound(f"no webhook {endpoint_id[:100]!r}", code="webhook_not_found")
        return endpoint

    async def all(self, *, tenant: str | None) -> list[Endpoint]:
        with backend_failure("webhook read", "webhooks cannot be read right now"):
            await self._load()
        found = [e for e in self.endpoints.values() if tenant is None or e.tenant == tenant]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    async def create(
        self,
        url: str,
        *,
        channels: Sequence[str],
        types: Sequence[str],
        secret: str | None,
        description: str,
        enabled: bool,
        tenant: str | None,
    ) -> tuple[Endpoint, str]:
        """Register an endpoint; returns it and its secret (shown this once)."""
        await self._check(url)
        secret = secret or generate_secret()
        endpoint = Endpoint(
            id=new_endpoint_id(),
            url=url,
            channels=tuple(channels) or ("*",),
            types=tuple(types),
            secrets=((secret, None),),
            enabled=enabled,
            description=description,
            tenant=tenant,
            created_at=time.time(),
        )
        return await self._save(endpoint), secret

    async def update(
        self, endpoint_id: str, *, tenant: str | None, changes: dict[str, Any]
    ) -> tuple[Endpoint, str | None]:
        """Change an endpoint; with ``rotate_secret`` or ``secret``, the new secret is
        returned (shown this once) and the old one keeps signing for the overlap."""
        endpoint = await self.get(endpoint_id, tenant=tenant)
        new_secret: str | None = None
        fields: dict[str, Any] = {}
        if "url" in changes:
            await self._check(changes["url"])
            fields["url"] = changes["url"]
        for name in ("channels", "types"):
            if name in changes:
                fields[name] = tuple(changes[name])
        if "description" in changes:
            fields["description"] = changes["description"]
        if "enabled" in changes:
            fields["enabled"] = bool(changes["enabled"])
            if changes["enabled"]:
                fields.update(disabled_reason=None, failing_since=None)
        endpoint = replace(endpoint, **fields)
        if changes.get("secret") or changes.get("rotate_secret"):
            new_secret = changes.get("secret") or generate_secret()
            endpoint = endpoint.rotated(
                new_secret, time.time(), self.settings.webhook_secret_overlap
            )
        return await self._save(endpoint), new_secret

    async def delete(self, endpoint_id: str, *, tenant: str | None) -> None:
        endpoint = await self.get(endpoint_id, tenant=tenant)
        with backend_failure("webhook delete", "webhooks cannot be stored right now"):
            await self.records.delete(ENDPOINTS, endpoint.id)
            await self.records.drop(_outbox(endpoint.id))
        self.endpoints.pop(endpoint.id, None)
        self._run_workers()
        await self._announce()

    async def _check(self, url: str) -> None:
        check_url(url)
        await resolve_allowed(url, allow_private=self.settings.webhook_allow_private)

    # -- deliveries --------------------------------------------------------------------

    async def enqueue(self, events: Sequence[Event], *, only: Endpoint | None = None) -> None:
        """Record a delivery of each event for each endpoint that wants it (or ``only``)."""
        if not self._loaded and only is None:
            with backend_failure("webhook read", "webhooks cannot be read right now"):
                await self._load()
        targets = [only] if only is not None else list(self.endpoints.values())
        now = time.time()
        for endpoint in targets:
            wanted = [e for e in events if only is not None or endpoint.wants(e)]
            for event in wanted:
                body = event.to_dict()
                delivery = Delivery(
                    key=delivery_key(endpoint.id, body),
                    endpoint_id=endpoint.id,
                    event=body,
                    created_at=now,
                    next_at=now,
                )
                try:
                    with backend_failure("webhook enqueue", "the webhook outbox is unavailable"):
                        await self.records.put(
                            _outbox(endpoint.id),
                            delivery.key,
                            delivery.dumps(),
                            ready=now,
                            if_absent=True,
                            limit=self.settings.webhook_queue_size,
                        )
                except LimitExceeded:
                    self.outcomes["dropped"] += 1
                    await self._disable(endpoint, "backlog_full")
                    break
            if wanted:
                wake = self._wake.get(endpoint.id)
                if wake is not None:
                    wake.set()

    async def deliveries(
        self, endpoint_id: str, *, tenant: str | None, limit: int
    ) -> list[Delivery]:
        endpoint = await self.get(endpoint_id, tenant=tenant)
        with backend_failure("webhook read", "webhooks cannot be read right now"):
            raws = await self.records.newest(_outbox(endpoint.id), limit=limit)
        return [Delivery.loads(raw) for raw in raws]

    async def retry(self, endpoint_id: str, delivery_id: str, *, tenant: str | None) -> Delivery:
        """Send a delivery again now, whatever became of it (a replay)."""
        endpoint = await self.get(endpoint_id, tenant=tenant)
        namespace = _outbox(endpoint.id)
        with backend_failure("webhook read", "webhooks cannot be read right now"):
            raw = await self.records.get(namespace, delivery_id)
            if raw is None:
                raise NotFound(f"no delivery {delivery_id[:100]!r}", code="delivery_not_found")
            now = time.time()
            delivery = replace(Delivery.loads(raw), status="pending", next_at=now)
            await self.records.put(namespace, delivery.key, delivery.dumps(), ready=now)
        wake = self._wake.get(endpoint.id)
        if wake is not None:
            wake.set()
        return delivery

    async def send_test(self, endpoint_id: str, *, tenant: str | None) -> Delivery:
        """Deliver a ``webhook.test`` event to this endpoint only (not kept in history)."""
        endpoint = await self.get(endpoint_id, tenant=tenant)
        stamp = now_timestamp()
        test = Event.from_dict(
            {
                "id": f"test-{int(time.time() * 1000)}",
                "channel": "webhooks",
                "type": "webhook.test",
                "data": {"endpoint_id": endpoint.id},
                "timestamp": stamp,
            }
        )
        await self.enqueue([test], only=endpoint)
        body = test.to_dict()
        return Delivery(
            key=delivery_key(endpoint.id, body),
            endpoint_id=endpoint.id,
            event=body,
            created_at=time.time(),
        )

    # -- workers -----------------------------------------------------------------------

    async def _work(self, endpoint_id: str) -> None:
        """Keep up to ``webhook_endpoint_concurrency`` of this endpoint's due deliveries
        in flight (a window, not batches: one slow answer does not hold the others),
        until the endpoint is disabled or deleted."""
        per_endpoint = self.settings.webhook_endpoint_concurrency
        # Longer than any attempt can take; after it, another node may try.
        lease = self.settings.webhook_timeout + 5.0
        wake = self._wake[endpoint_id]
        in_flight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            wake.set()

        await self._trim(endpoint_id)  # what earlier runs finished and did not forget
        try:
            while True:
                endpoint = self.endpoints.get(endpoint_id)
                if endpoint is None or not endpoint.enabled:
                    return
                wake.clear()
                room = per_endpoint - len(in_flight)
                claimed: list[bytes] = []
                if room > 0:
                    try:
                        claimed = await self.records.claim(
                            _outbox(endpoint_id), time.time(), lease=lease, limit=room
                        )
                    except Exception as exc:
                        log.warning("webhook outbox cannot be read: %s", type(exc).__name__)
                for raw in claimed:
                    task = asyncio.get_running_loop().create_task(
                        self._attempt(endpoint_id, Delivery.loads(raw))
                    )
                    in_flight.add(task)
                    task.add_done_callback(finished)
                if claimed and len(claimed) == room:
                    continue  # more may be due: claim again as soon as there is room
                if room > 0 or not in_flight:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL):
                            await wake.wait()
                else:
                    await wake.wait()  # full: an attempt finishing makes room
        finally:
            for task in in_flight:
                task.cancel()

    async def _attempt(self, endpoint_id: str, delivery: Delivery) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None or self._client is None:
            return
        status: int | None = None
        text, error, wait = "", None, None
        started = time.time()
        async with self._slots:
            try:
                await resolve_allowed(
                    endpoint.url, allow_private=self.settings.webhook_allow_private
                )
                body = body_of(delivery)
                timestamp = int(started)
                signatures = " ".join(
                    sign(secret, delivery.message_id, timestamp, body)
                    for secret in endpoint.signing_secrets(started)
                )
                headers = {
                    "content-type": "application/json",
                    ID_HEADER: delivery.message_id,
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: signatures,
                }
                response = await self._client.post(endpoint.url, content=body, headers=headers)
                status, text = response.status_code, response.text
                wait = retry_after(response.headers.get("retry-after"), time.time())
            except AddressRefused as exc:
                error = exc.message
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
        now = time.time()
        took = now - started
        self.latency_sum += took
        for bound in LATENCY_BUCKETS:
            if took <= bound:
                self.latency_buckets[bound] += 1
        outcome = judge(
            delivery,
            now=now,
            status=status,
            body=text,
            error=error,
            retry_after_s=wait,
            schedule=self.settings.webhook_retry_schedule,
        )
        done = outcome.delivery
        self.outcomes[
            "delivered"
            if done.status == "delivered"
            else "failed"
            if done.status == "failed"
            else "retry"
        ] += 1
        try:
            await self.records.put(_outbox(endpoint_id), done.key, done.dumps(), ready=done.next_at)
        except Exception as exc:
            # Unrecorded: the lease runs out and the delivery is attempted again.
            log.warning("webhook delivery outcome not recorded: %s", type(exc).__name__)
            return
        await self._health(endpoint_id, done, outcome.disable, now)
        if done.status != "pending":
            # Keep the newest KEEP_FINISHED this node finished; forget older ones as new
            # ones finish (cheap: no listing). A full trim runs when a worker starts.
            finished = self._finished.setdefault(endpoint_id, deque())
            finished.append(done.key)
            while len(finished) > KEEP_FINISHED:
                with contextlib.suppress(Exception):
                    await self.records.delete(_outbox(endpoint_id), finished.popleft())

    async def _trim(self, endpoint_id: str) -> None:
        """Forget finished deliveries beyond the newest ``KEEP_FINISHED``."""
        namespace = _outbox(endpoint_id)
        try:
            raws = await self.records.newest(namespace, limit=1_000_000)
            finished = [d for d in map(Delivery.loads, raws) if d.status != "pending"]
            for old in finished[KEEP_FINISHED:]:
                await self.records.delete(namespace, old.key)
        except Exception as exc:
            log.warning("webhook deliveries not trimmed: %s", type(exc).__name__)

    async def _health(
        self, endpoint_id: str, done: Delivery, disable: str | None, now: float
    ) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return
        if done.status == "delivered":
            if (
                endpoint.failing_since is not None
                or endpoint.last_success_at is None
                or (now - endpoint.last_success_at > POLL * 10)
            ):
                healthy = replace(endpoint, failing_since=None, last_success_at=now)
                await self._save(healthy, announce=False)
            return
        failing_since = endpoint.failing_since or now
        endpoint = replace(endpoint, failing_since=failing_since, last_failure_at=now)
        if disable is None and now - failing_since > self.settings.webhook_disable_after:
            disable = "failing"
        if disable is not None:
            await self._disable(endpoint, disable)
        else:
            await self._save(endpoint, announce=False)

    async def _disable(self, endpoint: Endpoint, reason: str) -> None:
        if not endpoint.enabled:
            return
        log.warning("webhook %s disabled: %s", endpoint.id, reason)
        await self._save(replace(endpoint, enabled=False, disabled_reason=reason))
        channel = "webhooks" if endpoint.tenant is None else f"tenant:{endpoint.tenant}/webhooks"
        try:
            await self.publish(
                channel,
                "webhook.disabled",
                {"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason},
            )
        except TidingsError as exc:
            log.warning("webhook.disabled not published: %s", exc.code)
