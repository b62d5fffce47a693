"""``tidings schema typescript`` with the JS client's generics, compiled by ``tsc``: typed
usage compiles, a wrong field or an unknown type does not.

``tsc`` comes from ``clients/js/node_modules`` (``npm ci`` in clients/js, which CI runs
before the tests); without it (or Node) these tests skip, unless CI or
``TIDINGS_TEST_REQUIRE_BROWSER=1`` requires the JavaScript tooling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"
TSC = CLIENT_DIR / "node_modules" / "typescript" / "bin" / "tsc"
REQUIRED = os.environ.get("TIDINGS_TEST_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"

# A hub module with pydantic-registered types, for `--hub`; schema files add job.progress.
HUB_MODULE = """
from pydantic import BaseModel
from tidings.hub import Hub

class AlarmRaised(BaseModel):
    alarm_id: str
    severity: str
    cleared: bool = False

hub = Hub()
hub.event_type("alarm.raised", AlarmRaised)
"""

USAGE = """
import { createClient, TidingsClient } from "{client}";
import type { TidingsEvents, TidingsTypedEvent } from "./events.js";

const client = createClient<TidingsEvents>({ url: "https://hub.example/" });
client.on("onu.online", (e) => {
  const serial: string = e.data.serial;
  const port: number = e.data.port;
  const power: number | null | undefined = e.data.rx_power;
  const kind: "onu.online" = e.type;
  console.log(serial, port, power, kind, e.channel, e.id);
});
client.on("job.progress", (e) => {
  if (e.data.state === "running") console.log(e.data.percent, e.data.steps?.[0]?.name);
});
client.on("alarm.raised", (e) => console.log(e.data.alarm_id, e.data.cleared));
client.on("*", (e) => {
  if (e.type === "onu.online") console.log(e.data.olt);
});
function label(e: TidingsTypedEvent): string {
  switch (e.type) {
    case "job.progress": return e.data.job_id;
    case "onu.online": return e.data.serial;
    case "alarm.raised": return e.data.severity;
  }
}
const typed = new TidingsClient<TidingsEvents>();
const untyped = createClient({ url: "https://hub.example/" });
untyped.on("anything", (e) => console.log(e.data));
console.log(label, typed);
"""

WRONG_FIELD = """
import { createClient } from "{client}";
import type { TidingsEvents } from "./events.js";

const client = createClient<TidingsEvents>({ url: "https://hub.example/" });
client.on("onu.online", (e) => console.log(e.data.serail));
"""

WRONG_TYPE = """
import { createClient } from "{client}";
import type { TidingsEvents } from "./events.js";

const client = createClient<TidingsEvents>({ url: "https://hub.example/" });
client.on("onu.offline", (e) => console.log(e.data));
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node = shutil.which("node")
    if node is None or not TSC.exists():
        why = "Node or tsc is missing: run `npm ci` in clients/js"
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("typescript")
    (folder / "typedhub.py").write_text(HUB_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings",
            "schema",
            "typescript",
            "--schemas",
            str(SCHEMAS),
            "--hub",
            "typedhub:hub",
            "--out",
            str(folder / "events.d.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return folder


def _compile(folder: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    client = os.path.relpath(CLIENT_DIR / "tidings.js", folder)
    (folder / name).write_text(source.replace("{client}", client))
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "lib": ["ES2022", "DOM"],
            "types": [],
        },
        "files": [name],
    }
    (folder / f"{name}.tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        ["node", str(TSC), "-p", f"{name}.tsconfig.json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )


def test_the_definitions_name_every_type(workdir: Path) -> None:
    text = (workdir / "events.d.ts").read_text()
    assert '"alarm.raised": AlarmRaised;' in text
    assert '"job.progress": JobProgress;' in text
    assert '"onu.online": OnuOnline;' in text


def test_typed_usage_compiles(workdir: Path) -> None:
    result = _compile(workdir, "usage.mts", USAGE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_field_does_not_compile(workdir: Path) -> None:
    result = _compile(workdir, "wrong_field.mts", WRONG_FIELD)
    assert result.returncode != 0
    assert "Property 'serail' does not exist on type 'OnuOnline'" in result.stdout


def test_an_unknown_type_does_not_compile(workdir: Path) -> None:
    result = _compile(workdir, "wrong_type.mts", WRONG_TYPE)
    assert result.returncode != 0
    assert '"onu.offline"' in result.stdout
