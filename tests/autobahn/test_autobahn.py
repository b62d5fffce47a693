"""RFC 6455 compliance of the data plane's WebSocket protocol: the Autobahn TestSuite.

kosoku's fuzzing client runs the Autobahn cases against an echo server built on
:class:`~tidings.dataplane.websocket.WebSocketProtocol`, in this test's event loop.
Excluded: 9.* (performance: large messages and round trips), 12.* and 13.*
(permessage-deflate, which the data plane never negotiates). The whole run takes a few
seconds; the slowest cases (5.19, 5.20, 6.4.*) wait out one-second pauses on purpose.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import kosoku
import pytest

from tests.autobahn.echo_server import UpgradeProtocol

if TYPE_CHECKING:
    from kosoku._kosoku import CaseResult

pytestmark = [pytest.mark.autobahn, pytest.mark.timeout(100)]

EXCLUDED = ["9.*", "12.*", "13.*"]
# Cases overlap their one-second pauses; each case has its own connection.
CONCURRENCY = 4
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
ACCEPTED_CLOSE = {"OK", "INFORMATIONAL"}


def write_report(results: list[CaseResult], path: Path) -> None:
    """A JSON summary of every case, for reading when the test fails."""
    path.write_text(
        json.dumps(
            {
                result.case_id: {
                    "behavior": result.behavior.value,
                    "behaviorClose": result.behavior_close.value,
                    "result": result.result,
                    "resultClose": result.result_close,
                    "durationMs": result.duration,
                    "description": result.description,
                }
                for result in results
            },
            indent=2,
        )
    )


async def test_fuzzingclient_cases_pass(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpgradeProtocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            results = await asyncio.wait_for(
                kosoku.run_fuzzingclient(
                    f"ws://127.0.0.1:{port}",
                    exclude_cases=EXCLUDED,
                    concurrency=CONCURRENCY,
                ),
                timeout=90,
            )
        except kosoku.FailureError as failure:
            # It carries the results: the assertions below say which cases failed.
            results = failure.results
    finally:
        server.close()
        await server.wait_closed()

    report = tmp_path / "autobahn.json"
    write_report(results, report)
    failed = [
        result
        for result in results
        if result.behavior.value not in ACCEPTED
        or result.behavior_close.value not in ACCEPTED_CLOSE
    ]
    assert not failed, f"{len(failed)} Autobahn cases failed (report: {report}):\n" + "\n".join(
        f"  {result.case_id} [{result.behavior.value} / {result.behavior_close.value}] "
        f"{result.description.split('<br>')[0].strip()} -- {result.result} {result.result_close}"
        for result in failed
    )
    # Every case of sections 1-7 and 10 ran: a selection that silently shrank passes nothing.
    ran = {result.case_id for result in results}
    sections = {case_id.split(".")[0] for case_id in ran}
    assert sections == {"1", "2", "3", "4", "5", "6", "7", "10"}
    assert len(ran) == len(results) >= 240
