"""The command core without a socket: resolution, permission, and what answers mean."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tidings.commands import CommandCall, Commands, forward_body, read_reply
from tidings.errors import CommandFailed, CommandTimeout, Forbidden, NotFound, TidingsError
from tidings.identity import ANONYMOUS, Identity

OPERATOR = Identity(client_id="op", tenant="acme", commands=("job.*",))


async def _echo(identity: Identity, args: dict[str, Any]) -> Any:
    return {"by": identity.client_id, **args}


async def test_an_in_process_handler_wins_over_the_forwarder() -> None:
    forwarded: list[CommandCall] = []

    async def forwarder(call: CommandCall) -> Any:
        forwarded.append(call)
        return "forwarded"

    commands = Commands(forwarder)
    commands.register("job.cancel", _echo)
    assert await commands.run(CommandCall("job.cancel", OPERATOR, {"id": 1})) == {
        "by": "op",
        "id": 1,
    }
    assert forwarded == []
    assert await commands.run(CommandCall("job.retry", OPERATOR)) == "forwarded"
    assert [c.name for c in forwarded] == ["job.retry"]


async def test_no_handler_and_no_url_is_an_unknown_command() -> None:
    with pytest.raises(NotFound) as caught:
        await Commands().run(CommandCall("job.x", OPERATOR, request_id=7))
    assert caught.value.code == "unknown_command" and caught.value.request_id == 7


async def test_permission_is_checked_before_the_name_is_resolved() -> None:
    commands = Commands()
    commands.register("admin.reset", _echo)
    for name in ("admin.reset", "no.such"):
        with pytest.raises(Forbidden, match="'commands' claim") as caught:
            await commands.run(CommandCall(name, OPERATOR, request_id="r"))
        assert caught.value.code == "forbidden" and caught.value.request_id == "r"
    assert await commands.run(CommandCall("admin.reset", ANONYMOUS)) == {"by": None}
    nothing = Identity(client_id="x", commands=())
    with pytest.raises(Forbidden):
        await commands.run(CommandCall("job.cancel", nothing))


async def test_handler_errors() -> None:
    async def crash(identity: Identity, args: dict[str, Any]) -> Any:
        raise RuntimeError("/srv/secret.py")

    async def refuse(identity: Identity, args: dict[str, Any]) -> Any:
        raise TidingsError("job is running", code="job_busy")

    commands = Commands()
    commands.register("job.crash", crash)
    commands.register("job.refuse", refuse)
    with pytest.raises(CommandFailed) as failed:
        await commands.run(CommandCall("job.crash", OPERATOR))
    assert failed.value.message == "the command failed" and failed.value.status == 502
    with pytest.raises(TidingsError) as refused:
        await commands.run(CommandCall("job.refuse", OPERATOR, request_id=3))
    assert (refused.value.code, refused.value.message) == ("job_busy", "job is running")
    assert refused.value.request_id == 3


async def test_an_in_process_handler_is_bounded_by_the_timeout() -> None:
    started = asyncio.Event()

    async def stuck(identity: Identity, args: dict[str, Any]) -> Any:
        started.set()
        await asyncio.Event().wait()

    commands = Commands(timeout=0.05)
    commands.register("job.stuck", stuck)
    with pytest.raises(CommandTimeout) as caught:
        await commands.run(CommandCall("job.stuck", OPERATOR, request_id=9))
    assert started.is_set() and caught.value.status == 504 and caught.value.request_id == 9


def test_the_forwarded_body() -> None:
    call = CommandCall("job.cancel", OPERATOR, {"job_id": "j1"}, "conn-1", 5)
    assert orjson.loads(forward_body(call)) == {
        "name": "job.cancel",
        "args": {"job_id": "j1"},
        "client_id": "op",
        "tenant": "acme",
        "connection_id": "conn-1",
        "request_id": 5,
    }


@pytest.mark.parametrize(
    ("status", "body", "result"),
    [(200, b'{"ok":true}', {"ok": True}), (201, b"[1]", [1]), (204, b"", None)],
)
def test_a_successful_reply_is_the_result(status: int, body: bytes, result: Any) -> None:
    assert read_reply(status, body) == result


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"error":"boom"}', "boom"),
        (409, b'{"error":{"code":"x","message":"busy"}}', "busy"),
        (500, b"<html>oops</html>", "the application answered 500"),
        (404, b'{"error": 3}', "the application answered 404"),
        (200, b"<html>ok</html>", "not JSON"),
    ],
)
def test_a_failed_reply(status: int, body: bytes, message: str) -> None:
    with pytest.raises(CommandFailed, match=message) as caught:
        read_reply(status, body)
    assert caught.value.code == "command_failed"


def test_an_application_error_message_is_bounded() -> None:
    with pytest.raises(CommandFailed) as caught:
        read_reply(500, orjson.dumps({"error": "x" * 10_000}))
    assert len(caught.value.message) == 200
