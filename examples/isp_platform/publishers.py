"""Publisher helpers: what the platform's services call to tell operators something.

Each helper names the tenant, and the channel follows from the event's family
(``tenant:<tenant>/<family>``). Data goes to the hub as given: the hub checks it against
the type's model and raises :class:`tidings.typed.InvalidEventData` (``invalid_event``,
with the field errors) before anything is stored or delivered.
"""

from __future__ import annotations

from typing import Any

from examples.isp_platform.events import CATALOGUE, channel

from tidings import Event, Hub


class Publisher:
    """Typed publishing into one hub, a tenant at a time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, tenant_id: str, event_type: str, data: dict[str, Any]) -> Event:
        """Publish one event of the catalogue on its family's channel of ``tenant_id``."""
        if event_type not in CATALOGUE:
            raise ValueError(f"{event_type!r} is not an event type of the platform")
        family, _ = CATALOGUE[event_type]
        return await self.hub.publish(channel(tenant_id, family), event_type, data)

    async def _family(
        self, family: str, tenant_id: str, event_type: str, data: dict[str, Any]
    ) -> Event:
        if CATALOGUE.get(event_type, ("",))[0] != family:
            raise ValueError(f"{event_type!r} is not an event type of family {family!r}")
        return await self.publish(tenant_id, event_type, data)

    async def publish_alert(
        self, tenant_id: str, alert_id: str, severity: str, source: str, text: str
    ) -> Event:
        """``alert.raised`` on ``tenant:<tenant_id>/alerts``."""
        data = {"alert_id": alert_id, "severity": severity, "source": source, "text": text}
        return await self.publish(tenant_id, "alert.raised", data)

    async def publish_onu(self, tenant_id: str, event_type: str, **data: Any) -> Event:
        """An ``onu.*`` event (``publish_onu("acme", "onu.online", serial=…, …)``)."""
        return await self._family("onu", tenant_id, event_type, data)

    async def publish_session(self, tenant_id: str, event_type: str, **data: Any) -> Event:
        """A ``session.*`` event: RADIUS accounting and authentication."""
        return await self._family("sessions", tenant_id, event_type, data)

    async def publish_ticket(self, tenant_id: str, event_type: str, **data: Any) -> Event:
        return await self._family("tickets", tenant_id, event_type, data)

    async def publish_subscriber(self, tenant_id: str, event_type: str, **data: Any) -> Event:
        return await self._family("subscribers", tenant_id, event_type, data)

    async def publish_job(self, tenant_id: str, event_type: str, **data: Any) -> Event:
        return await self._family("jobs", tenant_id, event_type, data)
