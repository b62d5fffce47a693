"""Typed events: the registry of event types and the validation of their ``data``.

An event type is registered with a pydantic model (``hub.event_type("onu.online",
OnuOnline)``) or a JSON Schema (a file of ``--schemas DIR``), optionally restricted to
channel patterns. :meth:`EventTypes.validate` answers, for one ``(channel, type, data)``,
the list of what is wrong with it as ``{"path": <JSON pointer into data>, "message"}``
entries; an empty list means the event may be published.

Sans-I/O: this module reads no socket and knows no hub; only :func:`load_schema_dir`
reads files, once, at start. It must never be on the path of an event whose type is not
registered: the node asks it nothing unless something is registered (or types are strict).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
from pydantic import BaseModel, ValidationError

from tidings.core.channels import channel_matches, validate_type
from tidings.errors import InvalidEvent
from tidings.settings import SettingsError

__all__ = [
    "CHANNELS_KEYWORD",
    "DEFAULT_DRAFT",
    "EventType",
    "EventTypes",
    "FieldError",
    "InvalidEventData",
    "UnknownEventType",
    "load_schema_dir",
    "pointer",
]

#: The schema keyword that lists the channel patterns a schema file's type applies to.
CHANNELS_KEYWORD = "x-tidings-channels"
#: The draft of a schema that declares none.
DEFAULT_DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: At most this many errors are reported per event: enough to fix a form, bounded.
MAX_ERRORS = 20


class FieldError(TypedDict):
    """One thing wrong with an event's data: where (a JSON pointer into ``data``) and what."""

    path: str
    message: str


class InvalidEventData(InvalidEvent):
    """An event of a registered type whose ``data`` does not match its schema.

    ``errors`` lists each problem as ``{"path", "message"}``; ``index`` is the event's
    position in its batch (``None`` for a single publish).
    """

    def __init__(
        self, event_type: str, errors: list[FieldError], *, index: int | None = None
    ) -> None:
        where = "" if index is None else f"events[{index}]: "
        first = errors[0]
        at = f" at {first['path']}" if first["path"] else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}{event_type!r} data is invalid{at}: {first['message']}{more}")
        self.event_type = event_type
        self.errors = errors
        self.index = index

    def details(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"errors": list(self.errors)}
        if self.index is not None:
            extra["index"] = self.index
        return extra


class UnknownEventType(InvalidEvent):
    """A type that is not registered (for its channel), refused because types are strict."""

    code = "unknown_event_type"


def pointer(parts: Iterable[str | int]) -> str:
    """The JSON pointer (RFC 6901) of a path: ``("ports", 0, "a/b")`` → ``/ports/0/a~1b``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


@dataclass(frozen=True)
class EventType:
    """A registered event type: its name, the JSON Schema of its ``data``, where it applies.

    ``model`` is the pydantic model it was registered with, if any: data is then
    validated by the model (its own validators included), and the schema is the model's.
    """

    name: str
    schema: dict[str, Any]
    channels: tuple[str, ...] = ()
    model: type[BaseModel] | None = None
    source: str | None = None
    _validator: Any = field(default=None, compare=False, repr=False)

    def applies_to(self, channel: str) -> bool:
        return not self.channels or any(channel_matches(channel, p) for p in self.channels)

    def errors(self, data: Any) -> list[FieldError]:
        if self.model is not None:
            try:
                self.model.model_validate(data)
            except ValidationError as exc:
                return [
                    {"path": pointer(error["loc"]), "message": error["msg"]}
                    for error in exc.errors(include_url=False)[:MAX_ERRORS]
                ]
            return []
        found: list[FieldError] = []
        for error in self._validator.iter_errors(data):
            found.extend(_field_errors(error))
        found.sort(key=lambda e: (e["path"], e["message"]))
        return found[:MAX_ERRORS]

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/v1/event-types`` says of it."""
        return {"type": self.name, "channels": list(self.channels), "schema": self.schema}


def _field_errors(error: jsonschema.exceptions.ValidationError) -> list[FieldError]:
    """An error at the field it is about: a missing or an unexpected property is reported
    at that property's path (as pydantic does), not at the object holding it."""
    path = list(error.absolute_path)
    instance, schema = error.instance, error.schema
    if error.validator == "required" and isinstance(instance, dict):
        # One error per missing name; the message quotes it as repr() does.
        names: Any = error.validator_value
        for name in names:
            if name not in instance and error.message.startswith(repr(name)):
                return [{"path": pointer([*path, name]), "message": "Field required"}]
    if (
        error.validator == "additionalProperties"
        and isinstance(instance, dict)
        and isinstance(schema, dict)
    ):
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extra = [
            key
            for key in instance
            if key not in known and not any(re.search(p, key) for p in patterns)
        ]
        if extra:
            return [
                {"path": pointer([*path, key]), "message": "Extra inputs are not permitted"}
                for key in extra
            ]
    return [{"path": pointer(path), "message": error.message}]


def _validator_for(schema: dict[str, Any], source: str) -> Any:
    """A validator of the draft ``schema`` declares (2020-12 when it declares none)."""
    declared = schema.get("$schema", DEFAULT_DRAFT)
    unknown: Any = None
    cls = jsonschema.validators.validator_for({"$schema": declared}, default=unknown)
    if cls is None:
        raise SettingsError(f"{source}: unknown JSON Schema draft {declared!r}")
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = pointer(exc.absolute_path) or "/"
        raise SettingsError(
            f"{source}: not a valid JSON Schema at {where}: {exc.message}"
        ) from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _check_patterns(patterns: Sequence[str], source: str) -> tuple[str, ...]:
    if isinstance(patterns, str) or not all(isinstance(p, str) and p for p in patterns):
        raise SettingsError(f"{source}: channel patterns must be a list of non-empty strings")
    return tuple(patterns)


class EventTypes:
    """The registered event types of a hub, and whether unregistered ones are refused.

    False (``bool``) when nothing is registered and types are not strict: the node then
    asks nothing at all (see :meth:`tidings.node.Node.publish_many`).
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._types: dict[str, EventType] = {}

    def __bool__(self) -> bool:
        return self.strict or bool(self._types)

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    def register_model(
        self, name: str, model: type[BaseModel], *, channels: Sequence[str] = ()
    ) -> EventType:
        """Register ``name`` with a pydantic model; its data is validated by the model."""
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError("an event type is registered with a pydantic model class")
        schema = model.model_json_schema()
        source = f"event type {name!r}"
        return self.add(
            EventType(validate_type(name), schema, _check_patterns(channels, source), model)
        )

    def register_schema(
        self,
        name: str,
        schema: dict[str, Any],
        *,
        channels: Sequence[str] = (),
        source: str | None = None,
    ) -> EventType:
        """Register ``name`` with a JSON Schema; raise :class:`SettingsError` if it is not one."""
        where = source or f"event type {name!r}"
        if not isinstance(schema, dict):
            raise SettingsError(f"{where}: a JSON Schema must be an object")
        validator = _validator_for(schema, where)
        patterns = _check_patterns(channels or schema.get(CHANNELS_KEYWORD, ()), where)
        event = EventType(validate_type(name), schema, patterns, None, source, validator)
        return self.add(event)

    def add(self, event: EventType) -> EventType:
        """Register an already-made type (another registry's, say); replaces its name."""
        self._types[event.name] = event
        return event

    def validate(self, channel: str, event_type: str, data: Any) -> list[FieldError]:
        """What is wrong with publishing ``data`` as ``event_type`` on ``channel``;
        ``[]`` if nothing. A type registered for other channels is unregistered here."""
        registered = self._types.get(event_type)
        if registered is None or not registered.applies_to(channel):
            return []
        return registered.errors(data)

    def check(self, channel: str, event_type: str, data: Any, index: int | None = None) -> None:
        """Raise :class:`InvalidEventData` or :class:`UnknownEventType` for a bad event."""
        registered = self._types.get(event_type)
        if registered is None or not registered.applies_to(channel):
            if self.strict:
                raise UnknownEventType(
                    f"event type {event_type!r} is not registered"
                    + (f" for channel {channel!r}" if registered is not None else "")
                    + " and this hub only accepts registered types"
                )
            return
        errors = registered.errors(data)
        if errors:
            raise InvalidEventData(event_type, errors, index=index)

    def load_directory(self, directory: str | Path) -> list[EventType]:
        """Register every ``*.json`` schema of ``directory`` (see :func:`load_schema_dir`)."""
        loaded = load_schema_dir(directory)
        for event in loaded:
            self.add(event)
        return loaded


_FILE_TYPE = re.compile(r"\.json$")


def load_schema_dir(directory: str | Path) -> list[EventType]:
    """One event type per ``*.json`` file of ``directory``: the type is the schema's
    ``title``, else the file name without ``.json``; ``x-tidings-channels`` lists the
    channel patterns it applies to. A file that is not a valid schema raises
    :class:`SettingsError` naming it."""
    folder = Path(directory)
    if not folder.is_dir():
        raise SettingsError(f"schemas: {str(folder)!r} is not a directory")
    found: dict[str, EventType] = {}
    scratch = EventTypes()
    for path in sorted(folder.glob("*.json")):
        source = f"schemas: {path}"
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{source}: cannot be read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise SettingsError(f"{source}: a JSON Schema must be an object")
        title = schema.get("title")
        name = title if isinstance(title, str) and title else _FILE_TYPE.sub("", path.name)
        try:
            validate_type(name)
        except InvalidEvent as exc:
            raise SettingsError(f"{source}: {exc.message}") from None
        if name in found:
            raise SettingsError(
                f"{source}: event type {name!r} is also defined by {found[name].source}"
            )
        found[name] = scratch.register_schema(name, schema, source=source)
    return list(found.values())
