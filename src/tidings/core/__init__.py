"""The Sans-I/O core of tidings.

Everything in this package works on plain values (strings, bytes, dicts, dataclasses):
channel names and events, SSE framing, the WebSocket message protocol, resume positions
and cursors, and the per-connection session state machine. It never imports asyncio,
never touches a socket and never reads a clock it was not handed, so every piece is
tested by feeding values in and reading values out.
"""
