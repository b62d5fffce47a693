"""Every exception tidings defines is in the one error tree, with a status and a code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tidings
from tidings.errors import BackendError, TidingsError, Unavailable


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(tidings.__path__, "tidings."):
        if module_info.name.endswith("__main__") or module_info.name.startswith("tidings.bench"):
            # The benchmark's own helpers are a tool, not the hub (and import extras).
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("tidings."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_the_walk_finds_the_exceptions() -> None:
    names = {cls.__name__ for cls in _exception_classes()}
    assert {"TidingsError", "WebSocketError", "HandshakeError", "SQLiteStoreError"} <= names


def test_every_exception_is_a_tidings_error() -> None:
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _exception_classes()
        if not issubclass(cls, TidingsError)
    ]
    assert outside == []


def test_every_error_has_a_status_and_a_code() -> None:
    for cls in _exception_classes():
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls  # type: ignore[attr-defined]
        assert isinstance(cls.code, str) and cls.code, cls  # type: ignore[attr-defined]


def test_a_backend_error_reaches_clients_as_a_plain_503() -> None:
    from tidings.backends.base import backend_failure

    with (
        pytest.raises(Unavailable) as caught,
        backend_failure("store read", "history cannot be read right now"),
    ):
        raise BackendError("/srv/secret/path.db was deleted")
    assert type(caught.value) is Unavailable
    assert caught.value.status == 503 and caught.value.code == "unavailable"
    assert caught.value.message == "history cannot be read right now"
