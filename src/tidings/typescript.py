"""TypeScript definitions of a hub's registered event types (``tidings schema typescript``).

For each type an interface (or alias) of its ``data``, made from its JSON Schema; then
``TidingsEvents``, the map from type name to data type that the JS client's generics take
(``createClient<TidingsEvents>(…)``, so that ``client.on("onu.online", e =>
e.data.serial)`` type-checks), and ``TidingsTypedEvent``, the union of the event objects
discriminated by ``type``.

What the translation knows: objects (required or optional properties,
``additionalProperties``), arrays and tuples (``prefixItems``), ``enum`` and ``const``,
string, number, integer, boolean and null, ``anyOf``/``oneOf`` as unions, ``allOf`` as
intersections, ``$ref`` to ``$defs``/``definitions``. Anything else is ``unknown``: a
loose type, never a wrong one. Pure: schemas in, text out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from tidings.typed import EventType

__all__ = ["type_name", "typescript_definitions"]

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_SCALARS = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}


def type_name(name: str) -> str:
    """``onu.online`` → ``OnuOnline``: a TypeScript identifier for a type or a definition."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    joined = "".join(w[:1].upper() + w[1:] for w in words) or "Event"
    return joined if not joined[0].isdigit() else "T" + joined


def _key(name: str) -> str:
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def _literal(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return json.dumps(value)
    return "unknown"


def _union(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    if "unknown" in unique:
        return "unknown"
    if not unique:
        return "never"
    return unique[0] if len(unique) == 1 else "(" + " | ".join(unique) + ")"


class _Translator:
    """One schema (and its definitions) to TypeScript, naming definitions ``Prefix…``."""

    def __init__(self, prefix: str, defs: dict[str, Any]) -> None:
        self.prefix = prefix
        self.defs = defs
        self.names = {name: prefix + type_name(name) for name in defs}

    def ref(self, ref: str) -> str:
        for local in ("#/$defs/", "#/definitions/"):
            if ref.startswith(local) and ref[len(local) :] in self.names:
                return self.names[ref[len(local) :]]
        return "unknown"

    def type_of(self, schema: Any, indent: str = "") -> str:
        if schema is True or schema == {}:
            return "unknown"
        if schema is False:
            return "never"
        if not isinstance(schema, dict):
            return "unknown"
        if "$ref" in schema:
            return self.ref(str(schema["$ref"]))
        if "const" in schema:
            return _literal(schema["const"])
        if "enum" in schema and isinstance(schema["enum"], list):
            return _union(_literal(v) for v in schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list):
                return _union(self.type_of(s, indent) for s in schema[keyword])
        if isinstance(schema.get("allOf"), list):
            parts = [self.type_of(s, indent) for s in schema["allOf"]]
            parts = [p for p in parts if p != "unknown"] or ["unknown"]
            return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union(self.type_of({**schema, "type": k}, indent) for k in kind)
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return self.array(schema, indent)
        if kind == "object" or "properties" in schema:
            return self.object(schema, indent)
        return "unknown"

    def array(self, schema: dict[str, Any], indent: str) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            items = [self.type_of(s, indent) for s in prefix]
            rest = schema.get("items")
            if rest not in (None, False):
                items.append(f"...{self.type_of(rest, indent)}[]")
            return "[" + ", ".join(items) + "]"
        if isinstance(schema.get("items"), list):  # draft-07 tuples
            return "[" + ", ".join(self.type_of(s, indent) for s in schema["items"]) + "]"
        item = self.type_of(schema.get("items", True), indent)
        return f"Array<{item}>"

    def object(self, schema: dict[str, Any], indent: str) -> str:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        inner = indent + "  "
        lines = []
        for name, sub in properties.items():
            optional = "" if name in required else "?"
            doc = sub.get("description") if isinstance(sub, dict) else None
            if isinstance(doc, str) and doc:
                lines.append(f"{inner}/** {doc.replace('*/', '* /')} */")
            lines.append(f"{inner}{_key(name)}{optional}: {self.type_of(sub, inner)};")
        extra = schema.get("additionalProperties", True)
        if extra is not False and not (extra is True and properties):
            # Open objects with listed properties stay exact for property checks;
            # a schema of extra values (or an object with none listed) is a map.
            value = self.type_of(extra, inner)
            if properties and value != "unknown":
                value = _union([value, *(self.type_of(s, inner) for s in properties.values())])
            lines.append(f"{inner}[key: string]: {value};")
        if not lines:
            return "Record<string, never>" if extra is False else "Record<string, unknown>"
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"

    def declaration(self, name: str, schema: Any, description: str | None) -> str:
        body = self.type_of(schema)
        doc = f"/** {description.replace('*/', '* /')} */\n" if description else ""
        if body.startswith("{\n"):
            return f"{doc}export interface {name} {body}\n"
        return f"{doc}export type {name} = {body};\n"


def typescript_definitions(event_types: Iterable[EventType]) -> str:
    """The ``.d.ts`` text of these types: a data type each, ``TidingsEvents``, and
    ``TidingsTypedEvent``."""
    types = list(event_types)
    out = [
        "// Generated by `tidings schema typescript`: the data of each registered event type.",
        '// Use with the client: createClient<TidingsEvents>(…).on("type", e => e.data…).',
        "",
    ]
    taken: set[str] = {"TidingsEvents", "TidingsTypedEvent"}
    entries = []
    for event in types:
        schema = event.schema
        defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
        name = _unique(type_name(event.name), taken)
        translator = _Translator(name, defs)
        for def_name in defs:
            def_type = _unique(translator.names[def_name], taken)
            translator.names[def_name] = def_type
        for def_name, definition in defs.items():
            doc = definition.get("description") if isinstance(definition, dict) else None
            out.append(translator.declaration(translator.names[def_name], definition, doc))
        description = schema.get("description")
        summary = f"`{event.name}`" + (f": {description}" if isinstance(description, str) else "")
        out.append(translator.declaration(name, schema, summary))
        entries.append((event.name, name))
    out.append("/** Registered event types and the type of their `data`. */")
    out.append("export interface TidingsEvents {")
    out.extend(f"  {json.dumps(event)}: {name};" for event, name in entries)
    out.append("}")
    out.append("")
    out.append("/** An event of a registered type, discriminated by `type`. */")
    out.append("export type TidingsTypedEvent = {")
    out.append("  [K in keyof TidingsEvents]: {")
    out.append("    id: string;")
    out.append("    channel: string;")
    out.append("    type: K;")
    out.append("    data: TidingsEvents[K];")
    out.append("    timestamp: string;")
    out.append("  };")
    out.append("}[keyof TidingsEvents];")
    return "\n".join(out) + "\n"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}{number}", number + 1
    taken.add(candidate)
    return candidate
