"""Automatic channels and server-side grants, with plain values (no loop, no clock)."""

from __future__ import annotations

import pytest

from tidings.identity import Identity
from tidings.settings import Settings
from tidings.targeting import AutoChannels, Grants, check_template


def test_templates_are_filled_from_the_identity_and_its_claims() -> None:
    auto = AutoChannels(["broadcast", "user:{sub}", "role:{role}", "team:{teams}", "x:{nope}"])
    identity = Identity(client_id="ann", claims={"role": "viewer", "teams": ["a", "b", 7]})
    assert auto.channels(identity) == [
        "broadcast",
        "user:ann",
        "role:viewer",
        "team:a",
        "team:b",
        "team:7",
    ]
    # Missing fields give nothing; a value no channel may hold is skipped.
    assert AutoChannels(["role:{role}"]).channels(Identity(claims={"role": "a b"})) == []
    assert AutoChannels(["role:{role}"]).channels(Identity(claims={"role": True})) == []


def test_a_tenant_only_joins_channels_of_its_tenant() -> None:
    auto = AutoChannels(["broadcast", "tenant:{tenant}/all", "tenant:other/all"])
    identity = Identity(client_id="bo", tenant="acme")
    assert auto.channels(identity) == ["tenant:acme/all"]


def test_a_template_that_can_never_be_a_channel_is_a_settings_error() -> None:
    assert check_template("role:{role}") == "role:{role}"
    with pytest.raises(ValueError, match="cannot make a valid channel"):
        check_template("has space:{x}")
    with pytest.raises(ValueError, match="auto_channels"):
        Settings(auto_channels=("a b",))


def test_grants_are_kept_while_used_and_forgotten_after_the_ttl() -> None:
    grants = Grants(ttl=10, per_client=2)
    grants.grant("ann", "a", now=0)
    grants.grant("ann", "b", now=1)
    assert grants.channels("ann", now=5) == ["a", "b"]
    assert grants.channels("ann", now=14) == ["a", "b"]  # used at 5: still there
    assert grants.channels("ann", now=30) == []
    assert grants.channels(None, now=30) == []


def test_grants_are_bounded_per_client_and_in_clients() -> None:
    grants = Grants(ttl=100, per_client=2, max_clients=2)
    for channel in ("a", "b", "c"):
        grants.grant("ann", channel, now=0)
    assert grants.channels("ann", now=1) == ["b", "c"]  # the oldest gave way
    grants.grant("bo", "x", now=2)
    grants.grant("cy", "y", now=3)
    assert list(grants.clients()) == ["bo", "cy"]  # ann, least recently used, is gone
    grants.revoke("bo", "x")
    grants.revoke("nobody", "x")
    assert len(grants) == 1
