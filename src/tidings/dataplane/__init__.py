"""The lean data plane ``tidings serve`` runs for the stream endpoints.

Under ``tidings serve``, a small front protocol reads each new connection's first request
head. WebSocket upgrades to ``/ws`` and SSE stream requests are served here, straight on
the asyncio transport: frames are encoded once per event, written through when a
connection's buffer is empty and batched into one write when it is not, with no task per
idle connection. Every other request is handed, bytes and all, to uvicorn's own HTTP
protocol and the ASGI app. ``hub.asgi_app()`` keeps serving the same endpoints inside any
ASGI server.
"""
