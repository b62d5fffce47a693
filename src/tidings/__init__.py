"""tidings: a self-hosted real-time event hub.

Publish events from Python or HTTP; deliver them over Server-Sent Events and WebSocket
with per-channel history and exact resume.

::

    from tidings import Hub, Settings

    hub = Hub(Settings())
    app.mount("/realtime", hub.asgi_app())
    await hub.publish("alerts", "disk_full", {"host": "db1"})
"""

from __future__ import annotations

from tidings.core.events import Event
from tidings.hub import Hub, Publication
from tidings.identity import Identity
from tidings.settings import Settings, load_settings
from tidings.version import __version__

__all__ = ["Event", "Hub", "Identity", "Publication", "Settings", "__version__", "load_settings"]
