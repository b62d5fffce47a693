"""Wi-Fi access-point manager: a FastAPI app, a tidings hub, and a hostapd log.

The hub's hostapd source follows the AP's log and publishes to ``network:<interface>``
(``client_connected``, ``client_disconnected``, ``ap_started``, ``ap_stopped``,
``ap_error``). The app serves, per network (``net_id`` is the interface name):

* ``GET /api/v1/interface/{net_id}/events`` — SSE, the last 100 events first;
* ``GET /api/v1/interface/{net_id}/clients`` — the stations now on it;
* ``PUT /api/v1/interface/{net_id}/expiry`` ``{"expires_at"}`` — the network expires
  then: ``network_expiring`` ``{net_id, time_remaining}`` is scheduled ``warning``
  seconds before (5 minutes), moved when the expiry moves;
* ``DELETE /api/v1/interface/{net_id}/expiry`` — the network stopped: the warning goes.

Run from the repository root::

    python -m examples.ap_manager --log tests/data/hostapd/sample.log
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException
from pydantic import AwareDatetime, BaseModel

from tidings import Hub, Settings
from tidings.sources.hostapd import HostapdSource

#: The warning comes this long before a network expires.
WARNING = timedelta(minutes=5)
BACKFILL = 100


class Expiry(BaseModel):
    expires_at: AwareDatetime


def source_url(log: str, leases: str | None = None, **options: str) -> str:
    query = {"leases": leases, **options} if leases else options
    params = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    return f"hostapd://{quote(log)}" + (f"?{params}" if params else "")


def create_app(
    log: str,
    leases: str | None = None,
    *,
    settings: Settings | None = None,
    warning: timedelta = WARNING,
    **options: str,
) -> FastAPI:
    """The app, following the hostapd log at ``log`` (an absolute path)."""
    hub = Hub(settings or Settings(history_size=BACKFILL))
    source = HostapdSource(source_url(log, leases, **options))
    hub.add_source(source)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield

    app = FastAPI(title="Wi-Fi access-point manager", lifespan=lifespan)
    app.state.hub, app.state.source = hub, source

    @app.get("/api/v1/interface/{net_id}/clients")
    def clients(net_id: str) -> dict[str, Any]:
        return {"net_id": net_id, "clients": source.clients(net_id)}

    @app.put("/api/v1/interface/{net_id}/expiry", status_code=202)
    async def set_expiry(net_id: str, body: Expiry) -> dict[str, Any]:
        # The same key again replaces the pending warning: extending moves it.
        warn_at = body.expires_at - warning
        scheduled = await hub.publish(
            f"network:{net_id}",
            "network_expiring",
            {"net_id": net_id, "time_remaining": int(warning.total_seconds())},
            at=max(warn_at, datetime.now(UTC)),
            key=f"expiry:{net_id}",
        )
        warn = datetime.fromtimestamp(scheduled.at, UTC).isoformat(timespec="milliseconds")
        return {"net_id": net_id, "expires_at": body.expires_at, "warning_at": warn}

    @app.delete("/api/v1/interface/{net_id}/expiry", status_code=204)
    async def stop_network(net_id: str) -> None:
        if not await hub.cancel_scheduled(f"expiry:{net_id}"):
            raise HTTPException(404, f"network {net_id} has no expiry")

    app.routes.append(
        hub.sse_route(
            "/api/v1/interface/{net_id}/events", channels=["network:{net_id}"], backfill=BACKFILL
        )
    )
    return app
