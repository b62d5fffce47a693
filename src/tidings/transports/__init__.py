"""Thin transports: they move frames between a socket (via ASGI) and a connection.

They parse nothing themselves beyond what their transport requires (query strings,
headers, WebSocket message boundaries); protocol logic lives in :mod:`tidings.core`
and in :class:`~tidings.connection.Connection`.
"""
