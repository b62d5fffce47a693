"""Channel and event-type names, and channel globs."""

from __future__ import annotations

import pytest

from tidings.core.channels import (
    CHANNEL_MAX,
    channel_matches,
    personal_channel,
    validate_channel,
    validate_type,
)
from tidings.errors import BadRequest, InvalidChannel, InvalidEvent


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "network:wlan0",
        "tenant:acme/alerts",
        "group:123",
        "client:456",
        "user@example.com",
        "k=v",
        "A-Z_a-z.0-9",
        "/leading/slash/",
        "x" * CHANNEL_MAX,
    ],
)
def test_valid_channels(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (CHANNEL_MAX + 1),
        "has space",
        "tab\there",
        "trailing\n",
        "caf\u00e9",
        "semi;colon",
        "com,ma",
        "per%cent",
        "qu?ery",
        "star*",
        "hash#",
        "back\\slash",
        "\0",
        "\uff41",  # fullwidth a: a letter, but not ASCII
        "\u0661",  # Arabic-Indic one: a digit, but not ASCII
    ],
)
def test_invalid_channels(name: str) -> None:
    with pytest.raises(InvalidChannel) as caught:
        validate_channel(name)
    assert caught.value.code == "invalid_channel"
    assert caught.value.status == 400


@pytest.mark.parametrize("name", [None, 5, b"bytes", ["a"]])
def test_non_string_channels(name: object) -> None:
    with pytest.raises(InvalidChannel, match="string"):
        validate_channel(name)


def test_error_message_does_not_echo_a_long_name() -> None:
    with pytest.raises(InvalidChannel) as caught:
        validate_channel("!" * 150)
    assert "!" * 61 not in caught.value.message


@pytest.mark.parametrize(
    "name", ["message", "onu.online", "client_connected", "a:b/c-d", "x" * 100]
)
def test_valid_types(name: str) -> None:
    assert validate_type(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 101, "with space", "line\nbreak", "cr\r", "a@b", "a=b", "caf\u00e9", 3, None]
)
def test_invalid_types(name: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_type(name)
    assert caught.value.code == "invalid_type"
    assert isinstance(caught.value, BadRequest)


@pytest.mark.parametrize(
    ("channel", "pattern", "expected"),
    [
        ("news", "news", True),
        ("news", "new", False),
        ("news", "*", True),
        ("tenant:acme/alerts", "tenant:acme/*", True),
        ("tenant:acme/a/b", "tenant:acme/*", True),
        ("tenant:acmex/alerts", "tenant:acme/*", False),
        ("tenant:other/alerts", "tenant:acme/*", False),
        ("group:1", "group:?", True),
        ("group:12", "group:?", False),
        ("group:3", "group:[1-3]", True),
        ("group:4", "group:[1-3]", False),
        ("News", "news", False),  # case matters
    ],
)
def test_channel_matches(channel: str, pattern: str, expected: bool) -> None:
    assert channel_matches(channel, pattern) is expected


def test_personal_channel_is_a_valid_channel() -> None:
    assert personal_channel("456") == "client:456"
    assert validate_channel(personal_channel("user@example.com")) == "client:user@example.com"
