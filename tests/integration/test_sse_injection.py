"""No line break reaches an SSE stream as a line break, and no header is injected (#17.3).

An SSE frame is lines: a CR or LF inside a value that the hub writes into an ``event:``
or ``id:`` line would end that line and let the rest forge fields, frames or, before the
body, response headers. Every value a client can choose that reaches one is tried with
control characters: the event type (``event:``), channel names and the token's subject
(both are part of the ``id:`` cursor), the resume position, idempotency and schedule
keys, ``X-Request-ID`` (echoed as a header) and error messages. Each is refused with a
4xx, or carried escaped; the stream a subscriber reads stays well-formed throughout.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets

from tests.servers import RunningHub, running_hub
from tidings.auth.tokens import mint_token

pytestmark = pytest.mark.streams

SECRET = "sse-injection-secret-that-is-long-enough-for-hs256"
API_KEY = "sse-injection-api-key-0123456789abcdef"
KEY = {"Authorization": f"Bearer {API_KEY}"}

#: Line breaks of SSE (CR, LF, CRLF), of HTTP/1.0 folding, of Unicode, and other controls.
HOSTILE = ("\n", "\r", "\r\n", "\n\n", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028")
#: The fields a hub's frame may hold (WHATWG: a line is a field, a comment, or blank).
_LINE = re.compile(r"(|:.*|retry: \d+|id: [^\x00]*|event: [A-Za-z0-9_\-.:/]+|data: .*)")


def _forgery(c: str) -> str:
    return f"a{c}event: forged{c}data: {{}}{c}{c}id: forged"


@pytest.fixture
async def hub() -> AsyncIterator[RunningHub]:
    async with running_hub(jwt_secret=SECRET, api_keys={"service": API_KEY}) as running:
        yield running


def _check_stream(body: bytes) -> list[dict[str, Any]]:
    """Every line of ``body`` is a field the hub writes, the only one that may carry what
    a publisher chose being ``data:``, as JSON; the events its frames carry."""
    events = []
    # The SSE line ends: CRLF, LF, CR. A forged line would show up as a line of its own.
    for line in re.split(r"\r\n|\r|\n", body.decode()):
        assert _LINE.fullmatch(line), repr(line)
        if line.startswith("data: "):
            value = json.loads(line.removeprefix("data: "))
            if isinstance(value, dict) and "channel" in value:
                events.append(value)
        else:
            assert "forged" not in line, repr(line)
    return events


async def _read_until(chunks: AsyncIterator[bytes], marker: bytes, body: bytes = b"") -> bytes:
    """``body`` and what ``chunks`` bring until ``marker`` has come and a frame ended."""
    async with asyncio.timeout(5):
        async for chunk in chunks:
            body += chunk
            if marker in body and body.endswith(b"\n\n"):
                return body
    raise AssertionError(f"the stream ended before {marker!r}: {body!r}")


async def test_control_characters_cannot_reach_an_sse_line(hub: RunningHub) -> None:
    """Types, channels and keys with line breaks are refused on every way to publish;
    data with them arrives escaped on one ``data:`` line; the stream stays well-formed."""
    token = mint_token(SECRET, sub="reader", channels=["news", "other"])
    async with (
        httpx.AsyncClient(base_url=hub.url, timeout=5) as http,
        http.stream("GET", f"/api/v1/events?channel=news&channel=other&token={token}") as sse,
        websockets.connect(f"{hub.ws_url}/ws?token={API_KEY}") as ws,
    ):
        assert sse.status_code == 200
        stream = sse.aiter_bytes()
        body = await _read_until(stream, b"event: position")
        assert (json.loads(await ws.recv()))["type"] == "connected"
        for c in HOSTILE:
            forged = _forgery(c)
            refusals = {
                "type": await http.post(
                    "/api/v1/publish", json={"channel": "news", "type": forged}, headers=KEY
                ),
                "channel": await http.post(
                    "/api/v1/publish", json={"channel": f"news{forged}", "data": 1}, headers=KEY
                ),
                "batch_type": await http.post(
                    "/api/v1/publish",
                    json={"events": [{"channel": "news", "data": 1, "type": forged}]},
                    headers=KEY,
                ),
                "scheduled_type": await http.post(
                    "/api/v1/publish",
                    json={"channel": "news", "type": forged, "delay_s": 60},
                    headers=KEY,
                ),
                "schedule_key": await http.post(
                    "/api/v1/publish",
                    json={"channel": "news", "key": forged, "delay_s": 60},
                    headers=KEY,
                ),
                "client_event_type": await http.post(
                    "/api/v1/clients/reader/events", json={"type": forged}, headers=KEY
                ),
                "disconnect_event_type": await http.post(
                    "/api/v1/clients/nobody/disconnect",
                    json={"reason": "x", "event": {"type": forged}},
                    headers=KEY,
                ),
            }
            for way, answer in refusals.items():
                assert answer.status_code == 400, (way, repr(c), answer.text)
                assert answer.json()["error"]["code"], (way, repr(c))
                assert b"\r" not in answer.content and b"\n" not in answer.content
            await ws.send(
                json.dumps({"type": "publish", "channel": "news", "event": forged, "id": "t"})
            )
            await ws.send(
                json.dumps({"type": "publish", "channel": f"news{forged}", "id": "c", "data": 1})
            )
            await ws.send(json.dumps({"type": "subscribe", "channel": f"news{forged}", "id": "s"}))
            replies: dict[str, Any] = {}
            async with asyncio.timeout(5):
                while replies.keys() != {"t", "c", "s"}:
                    message = json.loads(await ws.recv())
                    replies[message.get("id")] = message
            assert replies["t"]["code"] == "invalid_type", replies
            assert replies["c"]["code"] == "invalid_channel", replies
            assert replies["s"]["code"] == "invalid_channel", replies
            # An idempotency key is stored, never written into a frame or a header.
            keyed = await http.post(
                "/api/v1/publish",
                json={"channel": "other", "data": 0, "idempotency_key": forged},
                headers=KEY,
            )
            assert keyed.status_code in (201, 400), keyed.text

        # What may carry anything (data, with the same characters in strings and keys)
        # arrives as one data line per event, in JSON's escapes.
        data = {_forgery(c): [_forgery(c)] for c in HOSTILE}
        sent = await http.post(
            "/api/v1/publish", json={"channel": "news", "type": "ok", "data": data}, headers=KEY
        )
        assert sent.status_code == 201
        body = await _read_until(stream, b"event: ok\n", body)
        events = _check_stream(body)
        assert [e["type"] for e in events if e["channel"] == "news"] == ["ok"]
        assert events[-1]["data"] == data


async def test_refused_stream_requests_answer_json_and_no_header(hub: RunningHub) -> None:
    """Channel and type filters in the SSE query and path: 400 with a JSON body."""
    token = mint_token(SECRET, sub="reader", channels=["*"])
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        for c in HOSTILE:
            forged = quote(_forgery(c), safe="")
            for url in (
                f"/api/v1/events?channel=news{forged}&token={token}",
                f"/api/v1/events?channel=news&type={forged}&token={token}",
                f"/api/v1/channels/news{forged}/events/stream?token={token}",
                f"/api/v1/channels/news{forged}/history?token={token}",
            ):
                answer = await http.get(url)
                # A channel in the path that is no channel name matches no route: 404.
                assert answer.status_code in (400, 404), (url, answer.text)
                assert answer.headers["content-type"].startswith("application/json")
                codes = ("invalid_channel", "invalid_type", "not_found")
                assert answer.json()["error"]["code"] in codes
                assert not any("forged" in k or "forged" in v for k, v in answer.headers.items())
                assert b"\r" not in answer.content and b"\n" not in answer.content


async def test_a_resume_position_is_never_echoed(hub: RunningHub) -> None:
    """``Last-Event-ID`` and ``?last_event_id=`` are parsed, never copied into the stream:
    a hostile one is an unknown position (``reset``), on one channel and on several."""
    token = mint_token(SECRET, sub="reader", channels=["news", "other"])
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        for c in ("\n", "\r", "\r\n", "\x00"):
            for position in (_forgery(c), f"news;{_forgery(c)},other;{_forgery(c)}"):
                for query in ("channel=news", "channel=news&channel=other"):
                    url = f"/api/v1/events?{query}&token={token}"
                    url += f"&last_event_id={quote(position, safe='')}"
                    async with http.stream("GET", url) as sse:
                        assert sse.status_code == 200
                        body = await _read_until(sse.aiter_bytes(), b"event: position")
                    _check_stream(body)
                    assert b"event: reset" in body


async def test_x_request_id_is_echoed_only_when_plain(hub: RunningHub) -> None:
    """The one request header echoed in a response header: only a short printable id.
    (CR, LF and NUL never arrive: the HTTP parsers refuse them with 400.)"""
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        plain = await http.get("/health", headers={"X-Request-ID": "req-42"})
        assert plain.headers["x-request-id"] == "req-42"
        for hostile in (b"a\tb", b"x" * 65, b"caf\xe9\xa0", b"\xc2\x85"):
            answer = await http.get("/health", headers={"X-Request-ID": hostile})
            assert re.fullmatch(r"[0-9a-f]{16}", answer.headers["x-request-id"]), hostile
        for raw in (b"a\rSet-Cookie: forged=1", b"a\nSet-Cookie: forged=1", b"a\x00b"):
            status = await _raw_status(hub, b"X-Request-ID: " + raw)
            assert status.startswith(b"HTTP/1.1 400 "), (raw, status)
        assert (await http.get("/health")).status_code == 200


async def _raw_status(hub: RunningHub, header: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(b"GET /api/v1/events?channel=news HTTP/1.1\r\nHost: hub\r\n" + header)
        writer.write(b"\r\n\r\n")
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()


#: Subjects that would end the ``id:`` line (every stream's cursor names its personal
#: channel ``client:<sub>``) or break the cursor's ``,`` and ``;`` separators.
HOSTILE_SUBJECTS = [_forgery(c) for c in ("\n", "\r", "\r\n", "\x00")] + ["a,b;c", "a b"]


@pytest.mark.parametrize("sub", HOSTILE_SUBJECTS)
async def test_a_subject_that_cannot_name_a_channel_is_refused(hub: RunningHub, sub: str) -> None:
    token = mint_token(SECRET, sub=sub, channels=["news"])
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as http:
        async with http.stream("GET", f"/api/v1/events?channel=news&token={token}") as sse:
            if sse.status_code == 200:  # the defect: show what the stream carries
                sent = await http.post(
                    "/api/v1/publish", json={"channel": "news", "data": 1}, headers=KEY
                )
                assert sent.status_code == 201
                body = await _read_until(sse.aiter_bytes(), b"event: message")
                _check_stream(body)
            assert sse.status_code == 401
            assert json.loads(await sse.aread())["error"]["code"] == "invalid_token"
        async with websockets.connect(f"{hub.ws_url}/ws?token={token}") as ws:
            async with asyncio.timeout(5):
                error = json.loads(await ws.recv())
                assert error["type"] == "error"
                assert error["code"] == "invalid_token"
                await ws.wait_closed()
            assert ws.close_code == 4001
        answer = await http.post(
            "/api/v1/publish",
            json={"channel": "news"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 401
        assert "sub" in answer.json()["error"]["message"]
