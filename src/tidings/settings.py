"""Settings: one frozen object, built once at the edge and passed down.

Sources, lowest precedence first: defaults, a TOML file (``--config``), ``TIDINGS_*``
environment variables, then explicit values (CLI flags or keyword arguments). Only
:func:`load_settings` looks at an environment, and only the mapping it is handed; every
other module receives a :class:`Settings` or plain keyword arguments.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tidings.core.routes import STREAM_ROUTES, StreamRoute, check_route
from tidings.errors import BadRequest
from tidings.identity import HUB_CLAIMS
from tidings.signing import secret_key
from tidings.targeting import check_template

__all__ = [
    "ENV_PREFIX",
    "RouteSetting",
    "Settings",
    "SettingsError",
    "load_settings",
    "unknown_variables",
]

ENV_PREFIX = "TIDINGS_"


class RouteSetting(BaseModel):
    """One ``[[routes]]`` table: a stream served at the application's own path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="Starlette-style path: `/api/v1/interface/{net_id}/events`")
    transport: Literal["sse", "websocket"] = Field(description="`sse` or `websocket`")
    channels: tuple[str, ...] = Field((), description="channel templates: `network:{net_id}`")
    message: Literal["full", "data"] = Field(
        "full", description="`full`: the event object; `data`: only the event's data"
    )
    backfill: int = Field(
        0,
        ge=0,
        le=10_000,
        description="SSE: past events a client without a resume position gets first",
    )

    def route(self) -> StreamRoute:
        """The route this table describes."""
        return StreamRoute(self.path, self.transport, self.channels, self.message, self.backfill)

    @model_validator(mode="after")
    def _servable(self) -> RouteSetting:
        if any(self.path == builtin.path for builtin in STREAM_ROUTES):
            raise ValueError(f"route path {self.path!r} is one of the hub's own")
        check_route(self.route())
        return self


class Settings(BaseModel):
    """Every setting of a hub, with its default. Field names are the TOML keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8000, ge=0, le=65535, description="listen port")
    broker: str = Field(
        "memory://", description="event transport between processes: `memory://` or `redis://…`"
    )
    store: str = Field(
        "memory://",
        description="where history is kept: `memory://`, `sqlite:///path` or `redis://…`",
    )
    sources: tuple[str, ...] = Field(
        (),
        description=(
            "where the hub consumes events from: `postgres://…` (a transactional outbox "
            "table, docs/outbox.md), `hostapd:///path/to/log` (docs/sources.md)"
        ),
    )
    history_size: int = Field(100, ge=0, le=1_000_000, description="events kept per channel")
    history_ttl: float | None = Field(None, gt=0, description="seconds an event stays in history")
    heartbeat: float = Field(
        15.0, gt=0, description="seconds of silence before an SSE `: ping` comment"
    )
    sse_retry: int = Field(3000, ge=0, description="SSE `retry:` sent to clients, ms")
    ping_interval: float = Field(
        30.0, gt=0, description="WebSocket ping interval, s; silent for 2 intervals = stale"
    )
    queue_size: int = Field(1000, ge=1, description="per-connection outgoing queue, frames")
    queue_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="per-connection outgoing queue, bytes"
    )
    slow_consumer: Literal["disconnect", "drop"] = Field(
        "disconnect", description="`disconnect` or `drop` when a queue is full"
    )
    max_connection_age: float | None = Field(
        None, gt=0, description="close streams after this many seconds (`max_age`)"
    )
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret for tokens")
    jwt_public_key: str | None = Field(None, description="PEM file for RS256/ES256 tokens")
    jwks_file: str | None = Field(None, description="JWKS file for RS256/ES256 tokens")
    jwt_audience: str | None = Field(None, description="required `aud` claim")
    jwt_leeway: float = Field(
        5.0,
        ge=0,
        le=300,
        description="seconds of clock skew tolerated on `exp`, `iat`, `nbf` (0-300)",
    )
    jwt_issuer: str | None = Field(None, description="required `iss` claim")
    jwt_claims: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "read a claim the hub needs from the token's own claim, HUB=CLAIM "
            "(`sub=username`; `a.b` reads a nested claim)"
        ),
    )
    role_claim: str = Field(
        "role",
        min_length=1,
        description="the claim holding the client's roles (a name or a list; `a.b` nests)",
    )
    role_channels: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="channel patterns a role may subscribe to, ROLE=PATTERN[,PATTERN]",
    )
    role_publish: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="channel patterns a role may publish to, ROLE=PATTERN[,PATTERN]",
    )
    connect_hook: str | None = Field(
        None, description="URL asked for a connection's channels at connect"
    )
    connect_hook_timeout: float = Field(
        2.0, gt=0, description="seconds to wait for the connect hook"
    )
    auto_channels: tuple[str, ...] = Field(
        (),
        description=(
            "channels every connection joins, filled from its claims: "
            "`broadcast`, `tenant:{tenant}/all`, `role:{role}`"
        ),
    )
    server_subscription_ttl: float = Field(
        300.0,
        gt=0,
        description="seconds a client's server-side subscriptions wait for it to reconnect",
    )
    command_url: str | None = Field(
        None, description="URL that commands without an in-process handler are POSTed to"
    )
    command_secret: SecretStr | None = Field(
        None,
        description=(
            "signs forwarded commands (Standard Webhooks): `whsec_<base64>`, "
            "or any string used as its bytes"
        ),
    )
    command_timeout: float = Field(
        10.0, gt=0, description="seconds to wait for the application's answer to a command"
    )
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="API keys (full access), NAME=KEY"
    )
    allowed_origins: tuple[str, ...] = Field(
        (),
        description=(
            "browser origins whose pages may use the hub (CORS); "
            "none: localhost pages, for development; a list is exact"
        ),
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a webhook receiver has to answer"
    )
    webhook_retry_schedule: tuple[float, ...] = Field(
        (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        description="seconds before each webhook retry (±10% jitter); then the delivery fails",
    )
    webhook_disable_after: float = Field(
        5 * 24 * 3600.0,
        gt=0,
        description="seconds an endpoint may fail every attempt before it is disabled",
    )
    webhook_concurrency: int = Field(
        64, ge=1, description="webhook requests in flight per process, all endpoints together"
    )
    webhook_endpoint_concurrency: int = Field(
        4, ge=1, description="webhook requests in flight per endpoint and process"
    )
    webhook_queue_size: int = Field(
        10_000, ge=1, description="deliveries waiting per endpoint; more disables it"
    )
    webhook_allow_private: bool = Field(
        False, description="let webhooks reach loopback and private addresses"
    )
    webhook_secret_overlap: float = Field(
        24 * 3600.0, ge=0, description="seconds a rotated-out webhook secret still signs"
    )
    max_scheduled: int = Field(
        100_000, ge=0, description="scheduled events pending at once (per store)"
    )
    schemas: str | None = Field(
        None,
        description=(
            "directory of JSON Schema files, one per event type (`title` or file name); "
            "publishes of those types are validated"
        ),
    )
    strict_types: bool = Field(
        False, description="refuse events whose type is not registered (`unknown_event_type`)"
    )
    max_connections: int = Field(10_000, ge=1, description="open streams per process")
    max_connections_per_client: int = Field(100, ge=1, description="open streams per client id")
    max_subscriptions: int = Field(100, ge=1, description="channels per connection")
    max_event_size: int = Field(
        64 * 1024, ge=16, description="bytes of an event's serialised `data`"
    )
    max_batch_size: int = Field(1000, ge=1, description="events per publish batch")
    max_body_size: int = Field(
        8 * 1024 * 1024, ge=1024, description="bytes of an HTTP request body"
    )
    max_header_size: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="bytes of an HTTP request's header block; more: 431",
    )
    request_header_timeout: float = Field(
        10.0, gt=0, description="seconds to receive a request's header block; then 408"
    )
    request_body_timeout: float = Field(
        60.0, gt=0, description="seconds to receive a request's body; then 408"
    )
    max_message_size: int = Field(
        64 * 1024, ge=1024, description="bytes of a WebSocket client message"
    )
    connection_rate: int = Field(
        600, ge=0, description="new streams per IP per minute; 0: no limit"
    )
    publish_rate: float = Field(1000.0, gt=0, description="publishes per client per second")
    allow_anonymous: bool = Field(False, description="allow open mode on a non-loopback address")
    workers: int = Field(
        1,
        ge=1,
        description="processes on one port (`SO_REUSEPORT`); more than 1 needs a shared broker",
    )
    worker_ports: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "with `--workers N`, worker i also listens alone on this port + i, so that "
            "each can be scraped (`/metrics`) by itself"
        ),
    )
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description=(
            "this process's name in the cluster (`node` of `/api/v1/connections` and of "
            "`/metrics`); unique per node; workers add `-w<i>`; default: random per start"
        ),
    )
    data_plane: Literal["native", "asgi"] = Field(
        "native",
        description=(
            "how `tidings serve` serves streams: `native` (onto the socket) "
            "or `asgi` (as an embedded hub does)"
        ),
    )
    routes: tuple[RouteSetting, ...] = Field(
        (),
        description="streams at the application's own paths (TOML `[[routes]]` only)",
    )
    log_format: Literal["text", "json"] = Field("text", description="`text` or `json`")
    log_level: str = Field("info", description="`critical`, `error`, `warning`, `info` or `debug`")

    @field_validator("auto_channels")
    @classmethod
    def _templates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for template in value:
            check_template(template)
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from tidings.sources import check_source_url

        for url in value:
            check_source_url(url)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("log_level must be critical, error, warning, info or debug")
        return value

    @field_validator("jwt_claims")
    @classmethod
    def _claim_names(cls, value: dict[str, str]) -> dict[str, str]:
        for hub, claim in value.items():
            if hub not in HUB_CLAIMS:
                raise ValueError(
                    f"{hub!r} is not a claim the hub reads; it reads {', '.join(HUB_CLAIMS)}"
                )
            if not claim.strip():
                raise ValueError(f"the claim {hub!r} is read from is empty (give {hub}=CLAIM)")
        return value

    @field_validator("role_channels", "role_publish", mode="before")
    @classmethod
    def _role_patterns(cls, value: Any) -> Any:
        # TOML may give one pattern as a string: `role_channels = {ops = "ops:*"}`.
        if isinstance(value, Mapping):
            return {role: (p,) if isinstance(p, str) else p for role, p in value.items()}
        return value

    @field_validator("role_channels", "role_publish")
    @classmethod
    def _roles_named(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for role, patterns in value.items():
            if not role or not patterns or not all(patterns):
                raise ValueError("roles are given as ROLE=PATTERN, neither empty")
        return value

    @field_validator("command_secret")
    @classmethod
    def _signing_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret_key(value.get_secret_value())  # a bad whsec_ raises without the value
        return value

    @property
    def open_mode(self) -> bool:
        """No secret, key or API key configured: everyone may subscribe and publish."""
        return not (self.jwt_secret or self.jwt_public_key or self.jwks_file or self.api_keys)


def _from_env(name: str, raw: str) -> Any:
    """Environment values are strings: split the few fields that hold several."""
    if name == "api_keys":
        return dict(_pair(item) for item in raw.split(",") if item.strip())
    if name == "jwt_claims":
        return parse_pairs(raw.split(","), "claims are mapped as HUB=CLAIM")
    if name in {"role_channels", "role_publish"}:
        return parse_role_patterns(raw.split(","))
    if name == "webhook_retry_schedule":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if name in ("allowed_origins", "auto_channels", "sources"):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if raw == "" and name in {"history_ttl", "max_connection_age", "schemas"}:
        return None
    return raw


def _pair(item: str) -> tuple[str, str]:
    name, sep, key = item.strip().partition("=")
    if not sep or not name or not key:
        raise ValueError("API keys are given as NAME=KEY")
    return name, key


def parse_pairs(items: list[str] | tuple[str, ...], shape: str) -> dict[str, str]:
    """``["NAME=VALUE", …]`` to a mapping; a malformed item raises ``ValueError(shape)``."""
    pairs = {}
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.strip().partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{shape}, not {item.strip()!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_role_patterns(items: list[str] | tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``["ROLE=PATTERN", "ROLE=P1,P2", …]`` to ``{role: patterns}``. A role may be given
    several times; after a comma, an item without ``=`` is one more pattern of the role
    before it (channel names hold no comma, so ``ops=a,b`` and ``ops=a,ops=b`` agree)."""
    roles: dict[str, list[str]] = {}
    role: str | None = None
    for item in (part.strip() for given in items for part in given.split(",")):
        if not item:
            continue
        name, sep, pattern = item.partition("=")
        if sep:
            role = name.strip()
            pattern = pattern.strip()
        else:
            pattern = name
        if role is None or not role or not pattern:
            raise ValueError(f"roles are given as ROLE=PATTERN, not {item!r}")
        patterns = roles.setdefault(role, [])
        if pattern not in patterns:
            patterns.append(pattern)
    return {role: tuple(patterns) for role, patterns in roles.items()}


def parse_api_keys(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["NAME=KEY", …]`` as given on the command line, to a mapping."""
    return dict(_pair(item) for item in items)


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from a TOML file, an environment mapping, and explicit values.

    ``None`` in ``overrides`` means "not given", so CLI flags left unset fall through to
    the environment, the file, then the default. The TOML file holds the field names as
    top-level keys or under a ``[tidings]`` table. A bad value raises
    :class:`SettingsError` naming the setting and where the value came from.
    """
    data: dict[str, Any] = {}
    source: dict[str, str] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as handle:
                loaded = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_file}: not valid TOML: {exc}") from None
        table = loaded.get("tidings", loaded)
        for key, value in table.items():
            name = key.replace("-", "_")
            data[name] = value
            source[name] = f"{config_file}, key {key!r}"
    if environ is not None:
        for name in Settings.model_fields:
            variable = ENV_PREFIX + name.upper()
            raw = environ.get(variable)
            if raw is not None:
                try:
                    data[name] = _from_env(name, raw)
                except ValueError as exc:
                    raise SettingsError(f"{variable}: {exc}") from None
                source[name] = variable
    for name, value in overrides.items():
        if value is not None:
            data[name] = value
            source[name] = "--" + name.replace("_", "-")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, source)) from None


class SettingsError(BadRequest, ValueError):
    """A setting's value cannot be used; the message names the setting and its source."""

    code = "invalid_settings"


def _explain(exc: ValidationError, source: Mapping[str, str]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "settings"
        where = source.get(name, "the defaults")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, Settings.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: {name!r} is not a setting{hint}")
        else:
            problems.append(f"{where}: {name}: {message}")
    return "; ".join(problems)


#: TIDINGS_* variables that are not settings but are read elsewhere.
OTHER_VARIABLES = frozenset(
    {"TIDINGS_URL", "TIDINGS_TOKEN", "TIDINGS_BENCH_OTHER", "TIDINGS_CHROMIUM", "TIDINGS_PYTHON"}
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning per ``TIDINGS_*`` variable that is no setting (a typo is otherwise
    silently ignored), with the closest setting's variable."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in known:
            continue
        if variable in OTHER_VARIABLES or variable.startswith(ENV_PREFIX + "TEST_"):
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{variable} is not a setting and is ignored{hint}")
    return warnings
