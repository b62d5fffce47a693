"""Finding a Redis for the tests, and running private ones.

:func:`redis_url` answers the URL of a Redis the tests may use, resolved once per session:
``TIDINGS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) if it answers PING,
else a ``redis-server`` started on a free port for the session (if the binary is on
``PATH``). With neither, tests that need Redis skip, unless
``TIDINGS_TEST_REQUIRE_REDIS=1`` (as CI sets it): then they fail, so that a CI without
Redis cannot pass by skipping everything.

:class:`RedisServer` runs a private ``redis-server`` that a test may kill and restart.
Tests isolate their keys with :func:`unique_prefix` and remove them with
:func:`delete_prefix`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import uuid
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.service_support import missing, required
from tidings.bench.redis_server import RedisServer

DEFAULT_URL = "redis://127.0.0.1:6379/15"

_resolved: str | None = None
_missing: str | None = None
_session_server: RedisServer | None = None


def redis_required() -> bool:
    return required("TIDINGS_TEST_REQUIRE_REDIS")


def no_redis(reason: str) -> NoReturn:
    """Skip the test, or fail it when Redis is required."""
    missing("TIDINGS_TEST_REQUIRE_REDIS", reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def closed_port_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


def answers(url: str) -> bool:
    """True when a Redis at ``url`` answers PING within a second."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_url() -> str:
    """The URL of a Redis the tests may use; skips (or fails) the test if there is none."""
    global _resolved, _missing
    if _resolved is None and _missing is None:
        try:
            _resolved = _resolve()
        except RuntimeError as exc:
            _missing = str(exc)
    if _resolved is None:
        no_redis(_missing or "no Redis")
    return _resolved


def _resolve() -> str:
    global _session_server
    try:
        import redis  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "the redis package is not installed: pip install 'tidings[redis]'"
        ) from None
    url = os.environ.get("TIDINGS_TEST_REDIS_URL", DEFAULT_URL)
    if answers(url):
        return url
    if shutil.which("redis-server") is None:
        raise RuntimeError(f"no Redis answers at {url} and there is no redis-server to start")
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        raise RuntimeError(f"no Redis answers at {url}, and starting one failed: {exc}") from None
    atexit.register(server.stop)
    _session_server = server
    return server.url


def unique_prefix() -> str:
    return f"tidings-test-{uuid.uuid4().hex[:12]}"


def with_options(url: str, **options: str) -> str:
    """``url`` with query options added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | options
    return urlunsplit(parts._replace(query=urlencode(query)))


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()
