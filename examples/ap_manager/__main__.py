"""``python -m examples.ap_manager --log PATH [--leases PATH] [--port 8000]``."""

from __future__ import annotations

import argparse
import os

import uvicorn
from examples.ap_manager.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.ap_manager")
    parser.add_argument("--log", required=True, help="hostapd's log file")
    parser.add_argument("--leases", help="dnsmasq's leases file")
    parser.add_argument("--interface", help="for lines that name no interface")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--from-end", action="store_true", help="only lines written from now on (as tail -F)"
    )
    args = parser.parse_args()
    options = {"from": "end" if args.from_end else "start"}
    if args.interface:
        options["interface"] = args.interface
    leases = os.path.abspath(args.leases) if args.leases else None
    app = create_app(os.path.abspath(args.log), leases, **options)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
