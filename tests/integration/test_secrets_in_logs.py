"""Acceptance: secrets never appear in logs or error messages (SPEC §6).

A realistic authentication session (valid, invalid and expired tokens by query, header
and cookie; API-key publishes; a revocation; WebSocket refreshes) runs against a real
``tidings serve`` process logging JSON at debug level, and against an in-process hub
whose log records are captured. Neither the logs, nor any response body or message the
clients saw, nor ``/metrics`` may contain the JWT secret, the API key, any token or a
token's signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import websockets
from httpx_sse import aconnect_sse
from websockets.exceptions import ConnectionClosed

from tests.servers import running_hub, start_process
from tidings.auth.tokens import mint_token

SECRET = "s3cret-for-the-log-test-Zq8vW2xK9pL4mN7bR1tY5uE3"
API_KEY = "apikey-for-the-log-test-Hj6Gf2Dd8Ss4Aa0Qq3Ww7Ee1"
ROGUE_SECRET = "rogue-secret-that-signs-bad-tokens-0123456789abc"
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


@dataclass
class Session:
    """Every credential the clients used, and every body or message they received."""

    credentials: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def token(self, secret: str = SECRET, ttl: float = 600, **claims: Any) -> str:
        claims.setdefault("channels", ["news"])
        claims.setdefault("publish", ["news"])
        token = mint_token(secret, ttl=ttl, **claims)
        self.credentials.append(token)
        return token


def _assert_clean(text: str, session: Session, where: str) -> None:
    for secret in (SECRET, API_KEY, ROGUE_SECRET):
        assert secret not in text, f"a secret appears in {where}"
    for credential in session.credentials:
        assert credential not in text, f"a credential appears in {where}"
        parts = credential.split(".")
        if len(parts) == 3 and len(parts[2]) >= 16:
            assert parts[2] not in text, f"a token's signature appears in {where}"


async def _sse(http: httpx.AsyncClient, session: Session, query: str = "", **kwargs: Any) -> int:
    async with aconnect_sse(http, "GET", f"/api/v1/events?channel=news{query}", **kwargs) as sse:
        response = sse.response
        if response.status_code != 200:
            session.seen.append((await response.aread()).decode())
            return response.status_code
        async with asyncio.timeout(5):
            async for frame in sse.aiter_sse():
                if frame.id:  # the subscriptions are made
                    break
        return 200


async def _ws(
    ws_url: str, session: Session, query: str = "", headers: dict[str, str] | None = None
) -> str:
    """Connect, note every message until the first answer; ``connected`` or the error code."""
    async with websockets.connect(
        f"{ws_url}/ws?channel=news{query}", additional_headers=headers
    ) as ws:
        raw = await asyncio.wait_for(ws.recv(), 5)
        session.seen.append(str(raw))
        first = json.loads(raw)
        if first["type"] == "error":
            with contextlib.suppress(ConnectionClosed):
                session.seen.append(str(await asyncio.wait_for(ws.recv(), 5)))
            session.seen.append(ws.close_reason or "")
            return str(first["code"])
        return str(first["type"])


async def _until(ws: websockets.ClientConnection, session: Session, key: str, value: Any) -> Any:
    async with asyncio.timeout(5):
        while True:
            raw = await ws.recv()
            session.seen.append(str(raw))
            message = json.loads(raw)
            if message.get(key) == value:
                return message


async def run_session(base_url: str, ws_url: str) -> Session:
    """The clients' side: everything a busy day of authentication looks like."""
    session = Session()
    session.credentials.append(API_KEY)
    valid = session.token(sub="alice", jti="alice-1")
    expired = session.token(sub="alice", ttl=-30)
    bad_signature = session.token(secret=ROGUE_SECRET, sub="alice", admin=True)
    alg_none = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, None, "none")
    garbage = "not-a-jwt-but-secret-looking-Vb5Nc8Xz2Lk7Jh4Gf"
    session.credentials += [alg_none, garbage]
    rejected = {
        "expired": expired,
        "bad_signature": bad_signature,
        "alg_none": alg_none,
        "garbage": garbage,
        "the_secret_itself": SECRET,
        "the_key_plus_a_letter": API_KEY + "x",
    }
    api = {"Authorization": f"Bearer {API_KEY}"}

    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        # SSE with every kind of credential, in every place a credential may be.
        for name, credential in {"valid": valid, **rejected}.items():
            statuses = [
                await _sse(http, session, f"&token={credential}"),
                await _sse(http, session, headers={"Authorization": f"Bearer {credential}"}),
                await _sse(http, session, headers={"Cookie": f"access_token={credential}"}),
            ]
            assert statuses == ([200] * 3 if name == "valid" else [401] * 3), name

        # Publishers: the API key as a header and in the query; a wrong key; a JWT.
        body = {"channel": "news", "type": "note", "data": {"n": 1}}
        for kwargs, expected in [
            ({"headers": api}, 201),
            ({"params": {"token": API_KEY}}, 201),
            ({"headers": {"Authorization": f"Bearer {API_KEY}x"}}, 401),
            ({"headers": {"Authorization": f"Bearer {valid}"}}, 201),
            ({"headers": {"Authorization": f"Bearer {expired}"}}, 401),
            ({"headers": {"Cookie": f"access_token={bad_signature}"}}, 401),
        ]:
            response = await http.post("/api/v1/publish", json=body, **kwargs)
            session.seen.append(response.text)
            assert response.status_code == expected, response.text
        for path in ("/api/v1/channels/news/history", "/api/v1/connections"):
            for headers in (api, {"Cookie": f"access_token={valid}"}, {}):
                session.seen.append((await http.get(path, headers=headers)).text)

        # WebSocket: the same credentials, by query, header and cookie.
        for name, credential in {"valid": valid, **rejected}.items():
            outcomes = [
                await _ws(ws_url, session, f"&token={credential}"),
                await _ws(ws_url, session, headers={"Authorization": f"Bearer {credential}"}),
                await _ws(ws_url, session, headers={"Cookie": f"access_token={credential}"}),
            ]
            assert (outcomes == ["connected"] * 3) is (name == "valid"), (name, outcomes)

        # Refreshes over WebSocket: good, forged and expired; then a publish.
        async with websockets.connect(f"{ws_url}/ws?channel=news&token={valid}") as ws:
            await _until(ws, session, "type", "connected")
            for n, refresh in enumerate(
                [session.token(sub="alice"), bad_signature, expired, garbage]
            ):
                await ws.send(json.dumps({"type": "refresh", "token": refresh, "id": n}))
                reply = await _until(ws, session, "id", n)
                assert reply["type"] == ("refreshed" if n == 0 else "error"), reply
            await ws.send(json.dumps({"type": "publish", "channel": "news", "data": 1, "id": "p"}))
            assert (await _until(ws, session, "id", "p"))["type"] == "published"

        # Revocation: bob is disconnected, and his token is refused from then on.
        bob = session.token(sub="bob", jti="bob-1")
        async with websockets.connect(f"{ws_url}/ws?channel=news&token={bob}") as ws:
            await _until(ws, session, "type", "connected")
            response = await http.post(
                "/api/v1/clients/bob/disconnect",
                json={"reason": "token_revoked", "revoke": True},
                headers=api,
            )
            session.seen.append(response.text)
            assert response.status_code == 202
            await _until(ws, session, "type", "disconnect")
        assert await _ws(ws_url, session, f"&token={bob}") == "token_revoked"
        assert await _sse(http, session, headers={"Authorization": f"Bearer {bob}"}) == 401

        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        session.seen.append(metrics.text)
    return session


def _assert_session_clean(session: Session) -> None:
    errors = [json.loads(text) for text in session.seen if text.startswith('{"error"')]
    assert len(errors) >= 20  # the refusals really happened, and were read
    for n, text in enumerate(session.seen):
        _assert_clean(text, session, f"response or message #{n}")


async def test_a_served_hub_logs_no_secret_at_debug_level() -> None:
    process = await asyncio.to_thread(
        start_process,
        "--jwt-secret",
        SECRET,
        "--api-key",
        f"publisher={API_KEY}",
        "--log-level",
        "debug",
        "--log-format",
        "json",
    )
    output: list[bytes] = []
    # Drain the pipe while the server runs: debug logging fills a pipe buffer quickly.
    assert process.process.stdout is not None
    reader = threading.Thread(target=lambda: output.append(process.process.stdout.read()))
    reader.start()
    try:
        session = await run_session(process.url, f"ws://127.0.0.1:{process.port}")
    finally:
        await asyncio.to_thread(process.stop)
        await asyncio.to_thread(reader.join, 10)
        process.process.stdout.close()
    text = b"".join(output).decode()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    # The session was logged, at debug level, including the lines that used to carry
    # tokens (request paths, handshake headers, frames), now with the credential scrubbed.
    assert any(line["level"] == "debug" for line in lines)
    assert sum(line["message"] == "connected" for line in lines) >= 8
    assert "token=[redacted]" in text
    assert "authorization: [redacted]" in text
    _assert_clean(text, session, "the server's output")
    _assert_session_clean(session)


async def test_an_embedded_hub_logs_no_secret(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_hub(jwt_secret=SECRET, api_keys={"publisher": API_KEY}) as running:
        # After the server configured its loggers: capture everything, debug included.
        caplog.set_level(logging.DEBUG)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "tidings"):
            caplog.set_level(logging.DEBUG, logger=name)
        session = await run_session(running.url, running.ws_url)
    # The test's own clients (httpx, websockets.client) log what they send: not the hub's.
    records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    messages = [record.getMessage() for record in records]
    # Stream request heads are logged at debug level, credentials and all, by the data plane.
    debug = {r.name for r in records if r.levelname == "DEBUG"}
    assert "tidings.dataplane" in debug
    assert any("[redacted]" in message for message in messages)
    assert sum(message == "connected" for message in messages) >= 8
    _assert_clean("\n".join(messages), session, "the log records")
    formatted = "\n".join(caplog.handler.format(record) for record in records)
    _assert_clean(formatted, session, "the formatted log")
    captured = capfd.readouterr()
    _assert_clean(captured.out + captured.err, session, "stdout and stderr")
    _assert_session_clean(session)
