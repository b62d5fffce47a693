"""schemathesis, a tool we did not write, against the hub's own /openapi.json (#17): every
answer must be one the document describes (status, content type, body, headers), and none
a 5xx; in open mode and with a JWT. Streams are left out (their frames are tested on both
stream paths elsewhere); so are the checks that every schema-valid request is accepted
and every invalid one refused, as the hub's rules (channel grammar, tenants, schedules)
go beyond what a JSON Schema says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import start_process
from tidings.auth.tokens import mint_token

SECRET = "schemathesis-secret-long-enough-for-hs256"


def _st() -> list[str]:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("secured", [False, True], ids=["open", "jwt"])
def test_the_server_answers_as_its_openapi_document_says(secured: bool) -> None:
    command = _st()
    args: tuple[str, ...] = ("--webhook-allow-private", "--log-level", "warning")
    headers: list[str] = []
    if secured:
        args += ("--jwt-secret", SECRET)
        token = mint_token(SECRET, sub="fuzz", admin=True, channels=["**"], publish=["**"])
        headers = ["-H", f"Authorization: Bearer {token}"]
    node = start_process(*args)
    try:
        run = subprocess.run(
            [
                *command,
                "run",
                f"{node.url}/openapi.json",
                *headers,
                "--max-examples",
                "10",
                "--seed",
                "1",
                "--generation-deterministic",
                "--workers",
                "2",
                "--request-timeout",
                "5",
                "--exclude-tag",
                "stream",
                # The coverage phase trips on an internal error of schemathesis 4.32
                # (a KeyError in its own generator): examples, fuzzing and stateful run.
                "--phases",
                "examples,fuzzing,stateful",
                "--exclude-checks",
                "positive_data_acceptance,negative_data_rejection",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        node.stop()
        node.close()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
