"""Finding a PostgreSQL for the tests, and a scratch database per test.

:func:`postgres_url` answers the URL of a PostgreSQL server the tests may use:
``TIDINGS_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
if it answers. Without one, tests that need PostgreSQL skip, unless
``TIDINGS_TEST_REQUIRE_POSTGRES=1`` (as CI sets it): then they fail, so that a CI without
PostgreSQL cannot pass by skipping them.

:func:`scratch_database` creates ``tidings_test_<random>`` on that server and drops it
(connections and all) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

from tests.service_support import missing, required

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

_resolved: str | None = None
_missing: str | None = None


def postgres_required() -> bool:
    return required("TIDINGS_TEST_REQUIRE_POSTGRES")


def no_postgres(reason: str) -> NoReturn:
    """Skip the test, or fail it when PostgreSQL is required."""
    missing("TIDINGS_TEST_REQUIRE_POSTGRES", reason)


def postgres_url() -> str:
    """The URL of a server the tests may use; skips (or fails) the test if there is none."""
    global _resolved, _missing
    if _resolved is None and _missing is None:
        try:
            _resolved = _resolve()
        except RuntimeError as exc:
            _missing = str(exc)
    if _resolved is None:
        no_postgres(_missing or "no PostgreSQL")
    return _resolved


def _resolve() -> str:
    try:
        import psycopg
    except ImportError:
        raise RuntimeError(
            "the psycopg package is not installed: pip install 'tidings[postgres]'"
        ) from None
    url = os.environ.get("TIDINGS_TEST_POSTGRES_URL", DEFAULT_URL)
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise RuntimeError(f"no PostgreSQL answers at {url}: {type(exc).__name__}") from None
    return url


def database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh, empty database for one test; yields its URL."""
    import psycopg

    server = postgres_url()
    name = f"tidings_test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield database_url(server, name)
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
