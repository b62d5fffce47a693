"""The stream route table: matching, templates and the checks made at start."""

from __future__ import annotations

import pytest

from tidings.core.routes import RouteTable, StreamRoute, check_route, fill
from tidings.errors import InvalidChannel


def test_path_parameters_fill_the_channel_templates() -> None:
    route = StreamRoute("/api/v1/interface/{net_id}/events", "sse", ("network:{net_id}",))
    table = RouteTable([route])
    found = table.match("/api/v1/interface/wlan0/events")
    assert found == (route, {"net_id": "wlan0"})
    assert route.channels_for(found[1]) == ["network:wlan0"]
    # One segment only: a slash does not match `{net_id}`; `{name:path}` takes the rest.
    assert table.match("/api/v1/interface/a/b/events") is None
    assert table.match("/api/v1/channels/a/b/events/stream") is not None
    assert table.extra == (route,)
    # Dots in a path are literal.
    assert RouteTable([StreamRoute("/a.b", "sse")]).match("/aXb") is None


def test_a_path_value_that_is_no_channel_is_a_400() -> None:
    route = StreamRoute("/n/{net_id}", "sse", ("network:{net_id}",))
    with pytest.raises(InvalidChannel):
        route.channels_for({"net_id": "a b"})


def test_fill_leaves_unknown_fields() -> None:
    assert fill("a:{x}/{y}", {"x": "1"}) == "a:1/{y}"


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (StreamRoute("n/{id}", "sse"), "must start with /"),
        (StreamRoute("/n/{id}", "sse", ("net:{other}",)), "not a parameter of the path"),
        (StreamRoute("/n/{id}", "sse", ("bad name:{id}",)), "characters outside"),
    ],
)
def test_a_route_that_cannot_serve_is_refused(route: StreamRoute, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_route(route)
