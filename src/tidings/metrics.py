"""Prometheus metrics, read from the hub's own counters at scrape time.

Nothing is counted on the hot path for metrics' sake: sessions count what they
deliver anyway, and this collector adds them up when ``/metrics`` is scraped. Each hub
has its own registry, so several hubs in one process (tests, embedding) never collide.
Every sample carries a ``node`` label, the hub's ``node_id``: metrics stay per process
(as Prometheus expects of a target), and the label tells the processes of a cluster, or
the workers behind one port, apart once their series meet in one query. Labels never
carry client ids, tokens or keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tidings.node import Node

__all__ = ["CONTENT_TYPE", "HubCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: Node) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        # One constant label, added at scrape time: nothing per event, a few dozen
        # samples per scrape.
        node = self.hub.node_id
        for family in self._families():
            family.samples = [
                sample._replace(labels={**sample.labels, "node": node}) for sample in family.samples
            ]
            yield family

    def _families(self) -> Iterator[Metric]:
        hub = self.hub
        connections = GaugeMetricFamily(
            "tidings_connections", "Open stream connections.", labels=["transport"]
        )
        for transport, count in hub.connections_by_transport().items():
            connections.add_metric([transport], count)
        yield connections
        yield GaugeMetricFamily(
            "tidings_subscriptions",
            "Channel subscriptions of open connections.",
            value=hub.subscriptions_count(),
        )
        yield GaugeMetricFamily(
            "tidings_channels", "Channels with local subscribers.", value=len(hub.channel_stats())
        )
        yield GaugeMetricFamily(
            "tidings_queued_frames",
            "Frames waiting in connection queues.",
            value=sum(len(c.session.outbox) for c in hub.connections.values()),
        )
        counters = hub.counters
        yield CounterMetricFamily(
            "tidings_events_published",
            "Events stored and handed to the broker.",
            value=counters.published,
        )
        yield CounterMetricFamily(
            "tidings_events_delivered",
            "Event frames queued to connections.",
            value=hub.delivered_total(),
        )
        yield CounterMetricFamily(
            "tidings_events_dropped",
            "Events dropped by the drop slow-consumer policy.",
            value=hub.dropped_total(),
        )
        yield CounterMetricFamily(
            "tidings_slow_consumer_disconnects",
            "Connections closed as slow consumers.",
            value=counters.slow_consumer_disconnects,
        )
        yield CounterMetricFamily(
            "tidings_connections_opened",
            "Stream connections accepted.",
            value=counters.connections_opened,
        )
        yield CounterMetricFamily(
            "tidings_publish_nowait_failures",
            "Fire-and-forget publishes that failed.",
            value=counters.nowait_failed,
        )
        fallbacks = CounterMetricFamily(
            "tidings_rate_limit_fallbacks",
            "Rate-limit decisions taken in this process because Redis could not be reached.",
            labels=["limit"],
        )
        fallbacks.add_metric(["connections"], hub.gate.connection_limiter.fallbacks)
        fallbacks.add_metric(["publishes"], hub.gate.publish_limiter.fallbacks)
        yield fallbacks
        yield from _webhook_metrics(hub)


def _webhook_metrics(hub: Node) -> Iterator[Metric]:
    webhooks = hub.webhooks
    outcomes = CounterMetricFamily(
        "tidings_webhook_deliveries",
        "Webhook delivery attempts by outcome (delivered, retry, failed, dropped).",
        labels=["outcome"],
    )
    for outcome in ("delivered", "retry", "failed", "dropped"):
        outcomes.add_metric([outcome], webhooks.outcomes[outcome])
    yield outcomes
    buckets = [
        ("+Inf" if bound == float("inf") else str(bound), count)
        for bound, count in webhooks.latency_buckets.items()
    ]
    yield HistogramMetricFamily(
        "tidings_webhook_delivery_seconds",
        "Time from sending a webhook request to its answer (or failure).",
        buckets=buckets,
        sum_value=webhooks.latency_sum,
    )
    yield GaugeMetricFamily(
        "tidings_webhook_outbox",
        "Webhook deliveries waiting, every endpoint together (counted every 5 s).",
        value=sum(webhooks.pending.values()),
    )


def render_metrics(hub: Node, registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))


def make_registry(hub: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HubCollector(hub))
    return registry
