"""The ``tidings`` command, run as real subprocesses: serve, publish, listen, graceful
shutdown on SIGTERM, refusals at startup, and JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.servers import HubProcess, free_port, start_process
from tests.sse_support import next_event
from tidings.core.protocol import CloseCode

TIDINGS = [sys.executable, "-m", "tidings"]
# No TIDINGS_* settings from the caller's environment; wide lines so rich wraps less.
_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
    "COLUMNS": "200",
    "NO_COLOR": "1",
}


def _tidings(
    *args: str, timeout: float = 30, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDINGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**_ENV, **(env or {})},
    )


def _finish(process: HubProcess) -> str:
    """Stop the server if it still runs; return everything it wrote."""
    if process.process.poll() is None:
        process.process.kill()
    process.process.wait(timeout=10)
    assert process.process.stdout is not None
    with process.process.stdout:
        return process.process.stdout.read().decode(errors="replace")


@pytest.fixture
def server() -> Iterator[HubProcess]:
    process = start_process()
    try:
        yield process
    finally:
        _finish(process)


def _one_line(text: str) -> str:
    """Rich wraps long messages; compare with the line breaks taken out."""
    return " ".join(text.split())


# -- publish and listen ------------------------------------------------------------------


def test_publish_prints_the_stored_event(server: HubProcess) -> None:
    result = _tidings("publish", "demo", '{"a":1}', "--url", server.url)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert stored["channel"] == "demo"
    assert stored["type"] == "message"
    assert stored["data"] == {"a": 1}
    assert stored["id"] and stored["timestamp"].endswith("Z")
    history = httpx.get(f"{server.url}/api/v1/channels/demo/history", timeout=5).json()
    assert history["events"] == [stored]


def test_publish_with_type_and_data_from_stdin(server: HubProcess) -> None:
    result = _tidings(
        "publish",
        "net:wlan0",
        "-",
        "--type",
        "client_connected",
        "--url",
        server.url,
        stdin='{"mac": "aa:bb"}',
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert (stored["channel"], stored["type"], stored["data"]) == (
        "net:wlan0",
        "client_connected",
        {"mac": "aa:bb"},
    )


def test_publish_refused_exits_non_zero_with_the_error(server: HubProcess) -> None:
    result = _tidings("publish", "bad channel", '{"a":1}', "--url", server.url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "invalid_channel" in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_to_nothing_listening_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _tidings("publish", "demo", "1", "--url", url)
    assert result.returncode == 1
    assert "cannot reach" in _one_line(result.stderr)
    assert "Traceback" not in result.stderr


async def _wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    # Nothing tells the test when a separate process has subscribed; ask the hub, bounded.
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def _run_listen(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *TIDINGS,
        "listen",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_ENV,
    )


async def _finish_listen(listen: asyncio.subprocess.Process) -> tuple[str, str]:
    try:
        out, err = await asyncio.wait_for(listen.communicate(), 15)
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.communicate()
    return out.decode(), err.decode()


async def test_listen_prints_a_published_event_and_exits(server: HubProcess) -> None:
    listen = await _run_listen("alerts", "--url", server.url, "--count", "1", "--json")
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        try:

            async def subscribed() -> bool:
                presence = await http.get("/api/v1/channels/alerts/presence")
                return bool(presence.json()["connections"] == 1)

            await _wait_until(subscribed)
        except BaseException:
            listen.kill()
            await listen.communicate()
            raise
        response = await http.post(
            "/api/v1/publish", json={"channel": "alerts", "type": "disk_full", "data": {"h": 1}}
        )
        assert response.status_code == 201
        stored = response.json()
        out, err = await _finish_listen(listen)
        assert listen.returncode == 0, err
        assert [json.loads(line) for line in out.splitlines()] == [stored]

        # The listener is gone from the hub once it exits.
        async def gone() -> bool:
            return (await http.get("/api/v1/connections")).json()["connections"] == []

        await _wait_until(gone)


async def test_listen_since_replays_missed_events(server: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        stored = []
        for n in range(3):
            response = await http.post("/api/v1/publish", json={"channel": "jobs", "data": n})
            stored.append(response.json())
    listen = await _run_listen(
        "jobs", "--url", server.url, "--since", stored[0]["id"], "--count", "2", "--json"
    )
    out, err = await _finish_listen(listen)
    assert listen.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == stored[1:]


async def test_listen_invalid_channel_exits_with_the_error(server: HubProcess) -> None:
    listen = await _run_listen("bad channel", "--url", server.url, "--count", "1")
    out, err = await _finish_listen(listen)
    assert listen.returncode == 1
    assert out == ""
    assert "400" in err and "invalid_channel" in err
    assert "Traceback" not in err


# -- graceful shutdown -------------------------------------------------------------------


async def test_sigterm_disconnects_streams_with_server_shutdown_and_exits_0() -> None:
    process = await asyncio.to_thread(start_process)
    try:
        async with (
            httpx.AsyncClient(base_url=process.url, timeout=10) as http,
            aconnect_sse(http, "GET", "/api/v1/events?channel=demo") as source,
            websockets.connect(
                f"ws://127.0.0.1:{process.port}/ws?channel=demo", open_timeout=5
            ) as ws,
        ):
            events = source.aiter_sse()
            assert json.loads(await ws.recv())["type"] == "connected"
            assert json.loads(await ws.recv())["type"] == "subscribed"
            # Both streams are live: an event reaches both.
            stored = (
                await http.post("/api/v1/publish", json={"channel": "demo", "data": 1})
            ).json()
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
                "type": "event",
                "data": stored,
            }
            assert json.loads((await next_event(events)).data) == stored

            signalled = time.monotonic()
            process.process.send_signal(signal.SIGTERM)

            disconnect = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert disconnect["type"] == "disconnect"
            assert disconnect["reason"] == "server_shutdown"
            assert disconnect["code"] == CloseCode.SERVER_SHUTDOWN == 4000
            assert disconnect["reconnect"] is True
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 4000
            assert ws.close_reason == "server_shutdown"

            async with asyncio.timeout(5):
                frames = [sse async for sse in events if sse.data]
            assert [sse.event for sse in frames] == ["disconnect"]
            assert json.loads(frames[0].data)["reason"] == "server_shutdown"

            returncode = await asyncio.to_thread(process.process.wait, 10)
            took = time.monotonic() - signalled
        assert returncode == 0, _finish(process)
        assert took < 5, f"exited {took:.1f} s after SIGTERM"
    finally:
        output = _finish(process)
    assert "Traceback" not in output


def test_sigterm_with_no_streams_exits_0_quickly(server: HubProcess) -> None:
    signalled = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - signalled < 5


# -- startup refusals --------------------------------------------------------------------


def test_serve_on_a_public_address_in_open_mode_is_refused() -> None:
    result = _tidings("serve", "--host", "0.0.0.0", "--port", "0", timeout=20)
    assert result.returncode == 2
    message = _one_line(result.stderr)
    assert "refusing to serve 0.0.0.0 in open mode" in message
    assert "--allow-anonymous" in message
    assert "Traceback" not in result.stderr


def test_serve_workers_with_the_memory_broker_is_refused() -> None:
    result = _tidings("serve", "--workers", "2", "--port", "0", timeout=20)
    assert result.returncode == 2
    message = _one_line(result.stderr)
    assert "--workers needs a shared broker" in message
    assert "redis://" in message
    assert "Traceback" not in result.stderr


def test_serve_invalid_setting_is_refused() -> None:
    # A choice the option lists: refused by the option itself, naming the choices.
    result = _tidings("serve", "--slow-consumer", "sometimes", "--port", "0", timeout=20)
    assert result.returncode == 2
    assert "'sometimes' is not one of 'disconnect', 'drop'" in _one_line(result.stderr)
    assert "Traceback" not in result.stderr
    # A bound of the settings model: refused when the settings are built.
    result = _tidings("serve", "--history-size", "-5", "--port", "0", timeout=20)
    assert result.returncode == 2
    assert "invalid settings" in _one_line(result.stderr)
    assert "Traceback" not in result.stderr


# -- logs ----------------------------------------------------------------------------------


def _log_lines(output: str) -> list[dict[str, Any]]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "no log output"
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is JSON: nothing else is written
        assert {"time", "level", "logger", "message"} <= entry.keys()
        entries.append(entry)
    return entries


async def test_json_logs_carry_the_connection_id() -> None:
    process = await asyncio.to_thread(start_process, "--log-format", "json")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{process.port}/ws?channel=demo") as ws:
            connected = json.loads(await ws.recv())
            assert json.loads(await ws.recv())["type"] == "subscribed"
        ws_id = connected["connection_id"]
        async with (
            httpx.AsyncClient(base_url=process.url, timeout=10) as http,
            aconnect_sse(http, "GET", "/api/v1/events?channel=demo") as source,
        ):
            async with asyncio.timeout(5):
                async for sse in source.aiter_sse():
                    if sse.event == "position":  # subscribed
                        break
            sse_ids = [
                c["id"] for c in (await http.get("/api/v1/connections")).json()["connections"]
            ]
        assert len(sse_ids) == 1
        assert await asyncio.to_thread(process.stop, signal.SIGTERM) == 0
    finally:
        output = _finish(process)
    entries = _log_lines(output)
    for connection_id, transport in ((ws_id, "websocket"), (sse_ids[0], "sse")):
        mine = [e for e in entries if e.get("connection_id") == connection_id]
        messages = [e["message"] for e in mine]
        assert "connected" in messages and "disconnected" in messages, messages
        assert all(e.get("transport") == transport for e in mine)
    assert any(e["logger"].startswith("uvicorn") for e in entries)


def test_token_mints_a_token_the_hub_accepts() -> None:
    secret = "cli-test-secret-that-is-long-enough-for-hs256"
    minted = _tidings(
        "token",
        "--sub",
        "kiosk-7",
        "--tenant",
        "acme",
        "--channel",
        "tenant:acme/*",
        "--publish",
        "tenant:acme/checkin",
        "--ttl",
        "15m",
        "--secret",
        secret,
    )
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "kiosk-7"
    assert claims["tenant"] == "acme"
    assert claims["channels"] == ["tenant:acme/*"]
    assert claims["publish"] == ["tenant:acme/checkin"]
    assert 14 * 60 <= claims["exp"] - claims["iat"] <= 15 * 60
    node = start_process("--jwt-secret", secret)
    try:
        history = httpx.get(f"{node.url}/api/v1/channels/tenant:acme/x/history?token={token}")
        assert history.status_code == 200
        other = httpx.get(f"{node.url}/api/v1/channels/tenant:globex/x/history?token={token}")
        assert other.status_code == 403
    finally:
        _finish(node)
    missing = _tidings("token", "--sub", "x", env={"TIDINGS_JWT_SECRET": ""})
    assert missing.returncode == 2
    assert "secret" in missing.stderr
    bad_ttl = _tidings("token", "--sub", "x", "--ttl", "soon", "--secret", secret)
    assert bad_ttl.returncode == 2


# -- newcomer fixes (#12) ------------------------------------------------------------------


def test_publish_refuses_data_that_is_not_json_unless_raw(server: HubProcess) -> None:
    result = _tidings("publish", "demo", "{bad json", "--url", server.url)
    assert result.returncode == 2
    assert "DATA is not JSON" in result.stderr and "--raw" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    history = httpx.get(f"{server.url}/api/v1/channels/demo/history", timeout=5).json()
    assert all(e["data"] != "{bad json" for e in history["events"])
    raw = _tidings("publish", "demo", "{bad json", "--raw", "--url", server.url)
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["data"] == "{bad json"


def test_token_sets_audience_and_issuer_and_warns_once_on_a_short_secret() -> None:
    import jwt

    result = _tidings("token", "--sub", "ap-7", "--aud", "hub", "--iss", "portal", "--secret", "s")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert (claims["aud"], claims["iss"], claims["sub"]) == ("hub", "portal", "ap-7")
    (warning,) = result.stderr.strip().splitlines()  # ours, not PyJWT's
    assert "shorter than 32 bytes" in warning and "InsecureKeyLength" not in result.stderr
    long = _tidings("token", "--sub", "a", "--secret", "x" * 40)
    assert long.returncode == 0 and long.stderr == ""


def test_token_lists_the_commands_it_may_run() -> None:
    import jwt

    result = _tidings(
        "token", "--sub", "op", "--commands", "job.*", "--commands", "ping", "--secret", "x" * 40
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["commands"] == ["job.*", "ping"]


def test_connection_rate_zero_means_no_limit() -> None:
    from tidings.settings import Settings

    assert Settings(connection_rate=0).connection_rate == 0
    result = _tidings("serve", "--connection-rate", "-1", "--port", "0", timeout=20)
    assert result.returncode == 2


async def test_listen_json_prints_a_reset_as_a_json_object(server: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await http.post("/api/v1/publish", json={"channel": "gone", "data": 1})
    # A position from another epoch: the hub answers with `reset`, then the stream.
    listen = await _run_listen(
        "gone", "--url", server.url, "--since", "abcdef-3", "--json", "--count", "1"
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

        async def subscribed() -> bool:
            presence = await http.get("/api/v1/channels/gone/presence")
            return bool(presence.json()["connections"] == 1)

        await _wait_until(subscribed)
        stored = (await http.post("/api/v1/publish", json={"channel": "gone", "data": 2})).json()
    out, _ = await asyncio.wait_for(listen.communicate(), 15)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0]["type"] == "reset" and lines[0]["channel"] == "gone"
    assert lines[-1] == stored


def test_serve_on_a_taken_port_says_so_in_one_line_and_logs_nothing_first() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _tidings("serve", "--port", str(port), timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tidings: cannot start: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "serving on" not in result.stdout + result.stderr


def test_bench_without_what_a_server_needs_stops_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from typer.testing import CliRunner

    import tidings.bench
    from tidings.cli import app

    def no_run(*args: object, **kwargs: object) -> int:  # pragma: no cover - the failure
        raise AssertionError("a benchmark was started")

    monkeypatch.setattr(tidings.bench, "run_bench", no_run)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    result = CliRunner().invoke(app, ["bench", "--server", "socketio"])
    assert result.exit_code == 2
    assert "pip install 'tidings[bench]'" in result.output
    result = CliRunner().invoke(app, ["bench", "--server", "nope"])
    assert result.exit_code == 2 and "--server is one of" in result.output


def test_listen_says_why_it_cannot_stream(server: HubProcess) -> None:
    # Nothing listening: the reason, on stderr, and it keeps trying (bounded here).
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(subprocess.TimeoutExpired) as waited:
        _tidings("listen", "demo", "--url", dead, "--json", timeout=3)
    out = waited.value.stdout or b""
    err = (waited.value.stderr or b"").decode()
    assert out in (b"", "")  # with --json, stdout holds JSON objects only
    assert f"tidings: cannot reach {dead}: ConnectError" in err
    # A refusal is final, in the format publish uses.
    refused = _tidings("listen", "bad channel", "--url", server.url)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("tidings: 400 invalid_channel: ")
