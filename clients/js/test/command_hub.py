"""A hub with in-process command handlers, for the JS client's command tests.

``python command_hub.py PORT [SETTING=VALUE ...]`` serves it on 127.0.0.1:PORT (streams on
the native path, as ``tidings serve`` does) until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tidings.errors import TidingsError
from tidings.hub import Hub
from tidings.identity import Identity
from tidings.server import HubServer, build_config
from tidings.settings import Settings


def build(settings: Settings) -> Hub:
    hub = Hub(settings)

    @hub.command("math.add")
    async def add(identity: Identity, args: dict[str, Any]) -> Any:
        return {"sum": args["a"] + args["b"], "client_id": identity.client_id}

    @hub.command("job.refuse")
    async def refuse(identity: Identity, args: dict[str, Any]) -> Any:
        raise TidingsError("the job is running", code="job_busy")

    @hub.command("job.slow")
    async def slow(identity: Identity, args: dict[str, Any]) -> Any:
        await asyncio.sleep(float(args.get("seconds", 3)))
        return "late"

    return hub


def main() -> None:
    port = int(sys.argv[1])
    extra = dict(item.split("=", 1) for item in sys.argv[2:])
    settings = Settings(port=port, log_level="warning", **extra)
    hub = build(settings)
    HubServer(build_config(hub, settings), hub).run()


if __name__ == "__main__":
    main()
