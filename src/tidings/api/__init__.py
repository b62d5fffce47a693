"""The HTTP side of the hub: JSON API, error bodies, OpenAPI, and the ASGI app."""
