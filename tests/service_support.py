"""Services the tests may need (Redis, PostgreSQL): skipped when absent on a newcomer's
machine, mandatory when a ``TIDINGS_TEST_REQUIRE_*`` variable says so (``.ci/run`` under
``CI=true``)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required(variable: str) -> bool:
    """Whether ``variable`` (``TIDINGS_TEST_REQUIRE_REDIS``, …) makes the service mandatory."""
    return os.environ.get(variable, "") not in ("", "0")


def missing(variable: str, reason: str) -> NoReturn:
    """Skip the test, or fail it when ``variable`` makes the service mandatory."""
    if required(variable):
        pytest.fail(f"{variable} is set but {reason}", pytrace=False)
    pytest.skip(reason)
