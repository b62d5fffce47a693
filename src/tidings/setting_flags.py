"""Command-line options for every setting, made from the settings model.

Each field of :class:`~tidings.settings.Settings` is a ``tidings serve`` option, an
environment variable (``TIDINGS_<NAME>``) and a TOML key, all three from the one field:
a new setting is one line in the model. The option's help is the field's description,
its default and its environment variable. Options left out are ``None``, so that
:func:`~tidings.settings.load_settings` lets the environment, then the file, then the
default decide (flag > environment > file > default).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from tidings.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    parse_api_keys,
    parse_pairs,
    parse_role_patterns,
)

__all__ = ["flag_name", "setting_values", "settings_table", "with_setting_options"]

Command = Callable[..., Any]

#: Settings given as one value per flag, repeated: their flag is singular.
REPEATED = {
    "api_keys": "--api-key",
    "allowed_origins": "--allowed-origin",
    "auto_channels": "--auto-channel",
    "webhook_retry_schedule": "--webhook-retry",
    "jwt_claims": "--jwt-claim",
    "role_channels": "--role-channels",
    "role_publish": "--role-publish",
    "sources": "--source",
}
#: What a repeated flag's value looks like.
METAVARS = {
    "api_keys": "NAME=KEY",
    "allowed_origins": "ORIGIN",
    "auto_channels": "TEMPLATE",
    "webhook_retry_schedule": "SECONDS",
    "jwt_claims": "HUB=CLAIM",
    "role_channels": "ROLE=PATTERN",
    "role_publish": "ROLE=PATTERN",
    "sources": "URL",
}
#: Settings too structured for a flag or a variable: the TOML file only.
TOML_ONLY = frozenset({"routes"})
#: Settings that are on when the flag is given (there is no value to give).
SWITCHES = frozenset({"allow_anonymous", "strict_types", "webhook_allow_private"})


def flag_name(name: str) -> str:
    """The ``tidings serve`` flag of setting ``name``."""
    return REPEATED.get(name) or "--" + name.replace("_", "-")


def _plain(annotation: Any) -> Any:
    """``X | None`` to ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _shown(name: str, field: FieldInfo) -> str:
    if name in ("jwt_secret",):
        return "none"
    default = field.get_default(call_default_factory=True)
    if default is None or default in ((), {}):
        return "none"
    if isinstance(default, bool):
        return "off" if not default else "on"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, tuple):
        return ",".join(_shown_number(item) for item in default)
    return str(default)


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    kind = _plain(field.annotation)
    env = ENV_PREFIX + name.upper()
    description = (field.description or name.replace("_", " ")).rstrip(".")
    if name in REPEATED:
        text = _help(f"{description}; repeatable (env {env}=a,b).")
        option = typer.Option(REPEATED[name], help=text, metavar=METAVARS[name])
        return _keyword(name, Annotated[list[str] | None, option])
    text = _help(f"{description} (default {_shown(name, field)}; env {env}).")
    if name in SWITCHES:
        option = typer.Option(flag_name(name), help=text, metavar="")
        return _keyword(name, Annotated[bool | None, option])
    if kind is SecretStr or (kind not in (int, float, str) and get_origin(kind) is not Literal):
        kind = str
    option = typer.Option(flag_name(name), help=text)
    return _keyword(name, Annotated[kind | None, option])


def _shown_number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _help(text: str) -> str:
    # A sentence (but `memory://` stays as it is), with brackets escaped: help is markup.
    if text.split(" ", 1)[0].isalpha():
        text = text[:1].upper() + text[1:]
    return text.replace("[", "\\[")


def _keyword(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def with_setting_options(
    *extra: inspect.Parameter,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a ``**values`` command one option per setting (and the ``extra`` ones)."""

    def decorate(command: Command) -> Command:
        parameters = [
            _parameter(name, field)
            for name, field in Settings.model_fields.items()
            if name not in TOML_ONLY
        ]
        parameters.extend(extra)
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


def setting_values(values: dict[str, Any]) -> dict[str, Any]:
    """What the options gave, as :func:`~tidings.settings.load_settings` overrides."""
    given = {name: values.get(name) for name in Settings.model_fields if name not in TOML_ONLY}
    keys, origins = given.get("api_keys"), given.get("allowed_origins")
    given["api_keys"] = parse_api_keys(keys) if keys else None
    given["allowed_origins"] = tuple(origins) if origins else None
    for name in ("auto_channels", "sources", "webhook_retry_schedule"):
        items = given.get(name)
        given[name] = tuple(items) if items else None
    parsers: dict[str, Callable[[list[str]], Any]] = {
        "jwt_claims": lambda items: parse_pairs(items, "claims are mapped as HUB=CLAIM"),
        "role_channels": parse_role_patterns,
        "role_publish": parse_role_patterns,
    }
    for name, parse in parsers.items():
        items = given.get(name)
        if items:
            try:
                given[name] = parse(items)
            except ValueError as exc:
                raise SettingsError(f"{flag_name(name)}: {exc}") from None
    return {name: value for name, value in given.items() if value is not None}


def settings_table() -> str:
    """The README's configuration table, made from the model (``python -m
    tidings.setting_flags`` prints it; a test holds the README to it)."""
    rows = [
        "| flag | env | TOML key | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        flag = f"`{flag_name(name)}`"
        env = f"`{ENV_PREFIX}{name.upper()}`"
        if name in TOML_ONLY:
            flag = env = "\N{EN DASH}"
        elif name in REPEATED:
            flag = f"`{flag_name(name)} {METAVARS[name]}` (repeatable)"
            env = f"`{ENV_PREFIX}{name.upper()}={METAVARS[name]},…`"
        shown = _shown(name, field)
        default = shown if shown in ("none", "off", "on") else f"`{shown}`"
        rows.append(f"| {flag} | {env} | `{name}` | {default} | {field.description} |")
    rows.append(
        "| `--config FILE` | \N{EN DASH} | \N{EN DASH} | none | TOML file with the keys above |"
    )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    print(settings_table(), end="")
