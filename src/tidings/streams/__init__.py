"""Streams, written once for both paths.

This layer takes the plain facts of a request (:class:`~tidings.core.request.RequestFacts`)
and owns everything a stream does: which paths are streams (the table of
:mod:`tidings.core.routes`), who may open one (:mod:`.admission`, through the hub's
gate), the response headers and CORS
(:mod:`.cors`), the SSE and WebSocket stream cores (:mod:`.sse`, :mod:`.websocket`), the
one clock for heartbeats and pings and the one write discipline (:mod:`.services`,
:mod:`.flush`). A transport gives a stream an :class:`~.outlet.Outlet` that moves bytes:
the ASGI endpoints (:mod:`tidings.transports`) and the native front
(:mod:`tidings.dataplane`) are thin adapters and decide nothing.
"""
