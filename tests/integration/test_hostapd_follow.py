"""The hostapd source's file side, with real files: ``tail -F`` and the leases file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tidings.sources.hostapd.follow import LogFollower
from tidings.sources.hostapd.leases import LeasesFile

Follow = Callable[..., LogFollower]


@pytest.fixture
def follow() -> Iterator[Follow]:
    followers: list[LogFollower] = []

    def make(path: Path, **options: Any) -> LogFollower:
        followers.append(LogFollower(str(path), **options))
        return followers[-1]

    yield make
    for follower in followers:
        follower.close()


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


def test_new_lines_only_then_partial_lines_wait_for_their_newline(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "hostapd.log"
    follower = follow(log)
    assert follower.poll() == []  # no file yet: waits
    log.write_text("old line\n")
    assert follower.poll() == []  # opened at its end, as tail -F
    append(log, "wlan0: AP-ENA")
    assert follower.poll() == []
    append(log, "BLED\nwlan0: AP-STA-CONNECTED 02:00:00:00:00:01")
    assert follower.poll() == ["wlan0: AP-ENABLED"]
    append(log, "\n")
    assert follower.poll() == ["wlan0: AP-STA-CONNECTED 02:00:00:00:00:01"]
    assert follow(log, from_start=True).poll()[0] == "old line"


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "hostapd.log"
    log.write_text("")
    follower = follow(log)
    follower.poll()
    append(log, "one\ntwo\n")
    os.rename(log, tmp_path / "hostapd.log.1")  # logrotate: move ...
    append(tmp_path / "hostapd.log.1", "three\n")  # ... hostapd still writes the old one
    assert follower.poll() == ["one", "two", "three"]  # no new file yet: waits for it
    log.write_text("four\n")  # ... then create
    assert follower.poll() == ["four"]
    assert follower.rotations == 1
    append(log, "five\n")
    assert follower.poll() == ["five"]


def test_truncation_starts_again_from_the_beginning(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "hostapd.log"
    log.write_text("")
    follower = follow(log)
    follower.poll()
    append(log, "a long first line\nsecond\n")
    assert follower.poll() == ["a long first line", "second"]
    with log.open("r+") as file:  # copytruncate
        file.truncate(0)
    append(log, "new\n")
    assert follower.poll() == ["new"]
    assert follower.truncations == 1


def test_over_long_lines_are_dropped_and_the_next_ones_kept(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "hostapd.log"
    log.write_text("")
    follower = follow(log, max_line=10, max_read=8)
    follower.poll()
    append(log, "x" * 30 + "\nshort\n")
    got: list[str] = []
    for _ in range(10):
        got += follower.poll()
    assert got == ["short"] and follower.dropped == 1


def test_the_leases_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    leases = LeasesFile(str(path))
    assert leases.get("02:00:00:00:00:01") is None  # missing: no leases
    path.write_text("0 02:00:00:00:00:01 192.168.50.11 * *\n")
    lease = leases.get("02:00:00:00:00:01")
    assert lease is not None and (lease.ip, lease.hostname) == ("192.168.50.11", None)
    assert leases.get("02:00:00:00:00:01") is lease and leases.reads == 1  # unchanged
    # dnsmasq writes a new file and renames it over the old one.
    new = tmp_path / "dnsmasq.leases.new"
    new.write_text("0 02:00:00:00:00:01 192.168.50.12 pixel-7 *\n")
    os.replace(new, path)
    lease = leases.get("02:00:00:00:00:01")
    assert lease is not None and (lease.ip, lease.hostname) == ("192.168.50.12", "pixel-7")
    assert leases.reads == 2
    path.unlink()
    assert leases.get("02:00:00:00:00:01") is None
