"""The event-type registry without a hub: validation, JSON pointers, drafts, channel
patterns, schema directories, and the TypeScript made from the schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from tidings.errors import InvalidEvent, TidingsError
from tidings.settings import SettingsError
from tidings.typed import (
    EventTypes,
    InvalidEventData,
    UnknownEventType,
    load_schema_dir,
    pointer,
)
from tidings.typescript import type_name, typescript_definitions


class OnuOnline(BaseModel):
    serial: str
    olt: str
    port: int = Field(ge=0)
    rx_power: float | None = None


JOB_PROGRESS = {
    "type": "object",
    "required": ["job_id", "percent", "state"],
    "properties": {
        "job_id": {"type": "string"},
        "percent": {"type": "number", "minimum": 0, "maximum": 100},
        "state": {"enum": ["queued", "running", "done", "failed"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def test_pointer_escapes_per_rfc_6901() -> None:
    assert pointer([]) == ""
    assert pointer(["ports", 0, "a/b", "m~n"]) == "/ports/0/a~1b/m~0n"


def test_a_pydantic_model_reports_each_field() -> None:
    types = EventTypes()
    types.register_model("onu.online", OnuOnline)
    assert types.validate("olt:1", "onu.online", {"serial": "S1", "olt": "1", "port": 3}) == []
    errors = types.validate("olt:1", "onu.online", {"olt": 1, "port": -1})
    assert [e["path"] for e in errors] == ["/serial", "/olt", "/port"]
    assert "required" in errors[0]["message"].lower()
    assert "greater than or equal to 0" in errors[2]["message"]


def test_a_json_schema_reports_each_field_at_its_pointer() -> None:
    types = EventTypes()
    types.register_schema("job.progress", JOB_PROGRESS)
    errors = types.validate(
        "jobs", "job.progress", {"percent": 300, "state": "lost", "tags": ["a", 2], "x": 1}
    )
    assert errors == [
        {"path": "/job_id", "message": "Field required"},
        {"path": "/percent", "message": "300 is greater than the maximum of 100"},
        {
            "path": "/state",
            "message": "'lost' is not one of ['queued', 'running', 'done', 'failed']",
        },
        {"path": "/tags/1", "message": "2 is not of type 'string'"},
        {"path": "/x", "message": "Extra inputs are not permitted"},
    ]
    assert types.validate("jobs", "job.progress", "not an object")[0]["path"] == ""


def test_the_draft_declared_is_the_one_used() -> None:
    # prefixItems means nothing in draft-07: the same schema checks tuples only in 2020-12.
    schema = {"type": "array", "prefixItems": [{"type": "integer"}]}
    types = EventTypes()
    types.register_schema("new", schema)
    types.register_schema("old", {**schema, "$schema": "http://json-schema.org/draft-07/schema#"})
    assert types.validate("c", "new", ["x"]) != []
    assert types.validate("c", "old", ["x"]) == []


def test_channel_patterns_restrict_where_a_type_applies() -> None:
    types = EventTypes()
    types.register_model("onu.online", OnuOnline, channels=["olt:*"])
    assert types.validate("olt:7", "onu.online", {}) != []
    assert types.validate("lab", "onu.online", {}) == []  # unregistered there
    with pytest.raises(InvalidEventData) as caught:
        types.check("olt:7", "onu.online", {"serial": "S"})
    assert caught.value.code == "invalid_event" and caught.value.status == 400
    assert isinstance(caught.value, InvalidEvent)
    assert {e["path"] for e in caught.value.errors} == {"/olt", "/port"}
    assert caught.value.details() == {"errors": caught.value.errors}


def test_strict_refuses_what_is_not_registered_where_it_is_published() -> None:
    types = EventTypes(strict=True)
    assert types  # asked even with nothing registered
    types.register_model("onu.online", OnuOnline, channels=["olt:*"])
    with pytest.raises(UnknownEventType) as caught:
        types.check("olt:1", "message", None)
    assert caught.value.code == "unknown_event_type"
    with pytest.raises(UnknownEventType, match="for channel 'lab'"):
        types.check("lab", "onu.online", {"serial": "S", "olt": "1", "port": 1})
    types.check("olt:1", "onu.online", {"serial": "S", "olt": "1", "port": 1})


def test_an_empty_lax_registry_is_false() -> None:
    assert not EventTypes()
    loose = EventTypes()
    loose.register_schema("a", {})
    assert loose and len(loose) == 1


def test_errors_are_bounded() -> None:
    types = EventTypes()
    types.register_schema("many", {"type": "array", "items": {"type": "string"}})
    assert len(types.validate("c", "many", list(range(100)))) == 20


def test_a_bad_registration_is_refused() -> None:
    types = EventTypes()
    with pytest.raises(SettingsError, match="not a valid JSON Schema at /type"):
        types.register_schema("bad", {"type": 5})
    with pytest.raises(SettingsError, match="unknown JSON Schema draft"):
        types.register_schema("bad", {"$schema": "https://example.com/mine"})
    with pytest.raises(InvalidEvent):
        types.register_schema("no spaces allowed", {})
    with pytest.raises(TypeError):
        types.register_model("x", dict)  # type: ignore[arg-type]


def _write(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_schema_directory_names_types_by_title_or_file(tmp_path: Path) -> None:
    _write(tmp_path, "job.progress.json", JOB_PROGRESS)
    _write(
        tmp_path,
        "onu.json",
        {"title": "onu.online", "type": "object", "x-tidings-channels": ["olt:*"]},
    )
    _write(tmp_path, "README.md", "not a schema, not read")
    loaded = {t.name: t for t in load_schema_dir(tmp_path)}
    assert set(loaded) == {"job.progress", "onu.online"}
    assert loaded["onu.online"].channels == ("olt:*",)
    assert loaded["job.progress"].channels == ()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "must be an object"),
        ({"type": "nonsense"}, "not a valid JSON Schema"),
        ({"title": "has space"}, "type must be"),
        ({"x-tidings-channels": "olt:*"}, "list of non-empty strings"),
    ],
)
def test_a_bad_schema_file_is_a_settings_error_naming_it(
    tmp_path: Path, content: object, problem: str
) -> None:
    bad = _write(tmp_path, "broken.json", content)
    with pytest.raises(SettingsError) as caught:
        load_schema_dir(tmp_path)
    assert str(bad) in caught.value.message and problem in caught.value.message
    assert isinstance(caught.value, TidingsError)


def test_two_files_of_one_type_and_a_missing_directory_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a.json", {"title": "same"})
    _write(tmp_path, "b.json", {"title": "same"})
    with pytest.raises(SettingsError, match="also defined by"):
        load_schema_dir(tmp_path)
    with pytest.raises(SettingsError, match="not a directory"):
        load_schema_dir(tmp_path / "nowhere")


class Step(BaseModel):
    name: str
    done: bool = False


class JobProgress(BaseModel):
    """A job's progress."""

    job_id: str
    percent: float
    state: Literal["queued", "running", "done", "failed"]
    steps: list[Step] = []
    meta: dict[str, int] = {}
    kind: Literal["job"] = "job"
    note: str | None = None


def test_typescript_of_schemas() -> None:
    types = EventTypes()
    types.register_model("job.progress", JobProgress)
    types.register_schema(
        "shapes",
        {
            "type": "object",
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
                "any": {},
                "either": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]},
                "odd key": {"type": "boolean"},
            },
            "additionalProperties": {"type": "number"},
        },
    )
    text = typescript_definitions(types)
    assert "export interface JobProgressStep {\n  name: string;\n  done?: boolean;\n}" in text
    assert 'state: ("queued" | "running" | "done" | "failed");' in text
    assert "steps?: Array<JobProgressStep>;" in text
    assert "[key: string]: number;" in text  # meta: dict[str, int]
    assert 'kind?: "job";' in text
    assert "note?: (string | null);" in text
    assert "pair?: [string, number];" in text
    assert "any?: unknown;" in text
    assert "either?: (string | null);" in text
    assert '"odd key"?: boolean;' in text
    assert '  "job.progress": JobProgress;\n  "shapes": Shapes;' in text
    assert "export type TidingsTypedEvent" in text


def test_type_names_are_identifiers() -> None:
    assert type_name("onu.online") == "OnuOnline"
    assert type_name("radius/session-start") == "RadiusSessionStart"
    assert type_name("3g.up") == "T3gUp"
