"""The ``tidings`` command: serve a hub, publish to one, tail one."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import os
import sys
import warnings
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape

from tidings.setting_flags import setting_values, with_setting_options
from tidings.settings import Settings, load_settings, unknown_variables
from tidings.tail import error_text

__all__ = ["app", "main"]

app = typer.Typer(
    name="tidings",
    help="A self-hosted real-time event hub: SSE and WebSocket delivery with history and resume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Messages are one line each, however narrow the terminal: no wrapping.
err = Console(stderr=True, soft_wrap=True)

DEFAULT_URL = "http://127.0.0.1:8000"


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@with_setting_options(
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--config", help="TOML file with the same keys.")
        ],
    )
)
def serve(**values: Any) -> None:
    """Run a hub (in-memory by default; dashboard at http://127.0.0.1:8000/).

    Every setting is a flag, an environment variable (TIDINGS_<NAME>) and a TOML key;
    a flag wins over the environment, which wins over the file.
    """
    try:
        settings = load_settings(
            config_file=values.get("config"), environ=os.environ, **setting_values(values)
        )
    except (ValueError, OSError) as exc:
        err.print(f"[red]tidings: invalid settings:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    for warning in unknown_variables(os.environ):
        err.print(f"[yellow]tidings: warning:[/yellow] {warning}")
    if settings.schemas is not None:
        from tidings.typed import load_schema_dir

        try:
            load_schema_dir(settings.schemas)  # a bad file is named now, not in a worker
        except ValueError as exc:
            err.print(f"[red]tidings: invalid settings:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
    problem = startup_problem(settings)
    if problem:
        err.print(f"[red]tidings:[/red] {problem}")
        raise typer.Exit(2)
    from tidings.backends.sqlite import SQLiteStoreError
    from tidings.workers import run

    try:
        run(settings)
    except (ValueError, OSError, ImportError, SQLiteStoreError) as exc:
        err.print(f"[red]tidings: cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def startup_problem(settings: Settings) -> str | None:
    """Why these settings must not be served, or ``None``."""
    if settings.open_mode and not settings.allow_anonymous and not _is_loopback(settings.host):
        return (
            f"refusing to serve {settings.host} in open mode: anyone could subscribe and "
            "publish. Configure --jwt-secret or --api-key, or pass --allow-anonymous."
        )
    if settings.workers > 1 and settings.broker.startswith("memory"):
        return (
            "--workers needs a shared broker (--broker redis://…): with the memory broker "
            "each worker would be a separate hub and events would not cross between them."
        )
    return None


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` to seconds."""
    text = text.strip().lower()
    unit = _TTL_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise typer.BadParameter("use a number of seconds or 90s, 15m, 1h, 7d") from None
    if value <= 0:
        raise typer.BadParameter("the ttl must be positive")
    return value


@app.command()
def token(
    sub: Annotated[str, typer.Option("--sub", help="Client id (the token's subject).")],
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="Pattern it may subscribe to.")
    ] = None,
    publish: Annotated[
        list[str] | None, typer.Option("--publish", help="Pattern it may publish to.")
    ] = None,
    commands: Annotated[
        list[str] | None,
        typer.Option("--commands", help="Pattern of the commands it may run.", metavar="PATTERN"),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant it belongs to.")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="May use the admin APIs.", metavar="")
    ] = False,
    ttl: Annotated[str, typer.Option(help="Lifetime: 3600, 15m, 1h, 7d.")] = "1h",
    aud: Annotated[
        str | None, typer.Option("--aud", help="Audience (a hub with --jwt-audience needs it).")
    ] = None,
    iss: Annotated[
        str | None, typer.Option("--iss", help="Issuer (a hub with --jwt-issuer needs it).")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="HS256 secret.", envvar="TIDINGS_JWT_SECRET")
    ] = None,
) -> None:
    """Mint an HS256 token for development (uses --secret or TIDINGS_JWT_SECRET)."""
    from tidings.auth.tokens import mint_token

    if not secret:
        err.print("[red]tidings: give --secret or set TIDINGS_JWT_SECRET[/red]")
        raise typer.Exit(2)
    if len(secret.encode()) < 32:
        # PyJWT would warn in its own words; one line of ours says what to do.
        err.print(
            "[yellow]tidings: warning:[/yellow] the secret is shorter than 32 bytes, too "
            "short for HS256; use a longer one outside development"
        )
    extra = {key: value for key, value in (("aud", aud), ("iss", iss)) if value is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above, once
        print(
            mint_token(
                secret,
                sub=sub,
                ttl=parse_ttl(ttl),
                channels=channel or (),
                publish=publish or (),
                commands=commands or (),
                tenant=tenant,
                admin=admin,
                extra=extra,
            )
        )


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@app.command()
def publish(
    channel: Annotated[str, typer.Argument(help="Channel to publish to.")],
    data: Annotated[str, typer.Argument(help="JSON data, or - to read it from stdin.")] = "null",
    raw: Annotated[
        bool, typer.Option("--raw", help="Publish DATA as a string, not JSON.", metavar="")
    ] = False,
    type: Annotated[str, typer.Option("--type", "-t", help="Event type.")] = "message",  # noqa: A002
    url: Annotated[str, typer.Option(help="Hub URL.", envvar="TIDINGS_URL")] = DEFAULT_URL,
    token: Annotated[
        str | None, typer.Option(help="Bearer token or API key.", envvar="TIDINGS_TOKEN")
    ] = None,
) -> None:
    """Publish one event and print it as stored."""
    text = sys.stdin.read() if data == "-" else data
    if raw:
        value: Any = text
    else:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            err.print(
                f"[red]tidings: DATA is not JSON[/red] ({exc}); "
                "quote a string as '\"text\"', or pass --raw to publish it as a string"
            )
            raise typer.Exit(2) from None
    try:
        response = httpx.post(
            url.rstrip("/") + "/api/v1/publish",
            json={"channel": channel, "type": type, "data": value},
            headers=_headers(token),
            timeout=10,
        )
    except httpx.HTTPError as exc:
        err.print(f"[red]tidings: cannot reach {url}:[/red] {type_name(exc)}")
        raise typer.Exit(1) from None
    if response.status_code != 201:
        err.print(f"[red]tidings: {response.status_code}[/red] {error_text(response)}")
        raise typer.Exit(1)
    print(response.text)


def type_name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@app.command()
def listen(
    channels: Annotated[list[str], typer.Argument(help="Channels to follow.")],
    since: Annotated[str | None, typer.Option(help="Resume after this event id / cursor.")] = None,
    type: Annotated[  # noqa: A002 - the flag is --type
        list[str] | None, typer.Option("--type", "-t", help="Only these types.")
    ] = None,
    url: Annotated[str, typer.Option(help="Hub URL.", envvar="TIDINGS_URL")] = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(help="Bearer token.", envvar="TIDINGS_TOKEN")] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print raw JSON lines.", metavar="")
    ] = False,
    count: Annotated[int | None, typer.Option(help="Exit after this many events.")] = None,
) -> None:
    """Tail channels live (over SSE), resuming by itself when the stream drops."""
    from tidings.tail import tail

    status = 0
    with contextlib.suppress(KeyboardInterrupt):
        status = asyncio.run(
            tail(
                url,
                channels,
                since=since,
                types=type or [],
                token=token,
                json_lines=json_lines,
                count=count,
            )
        )
    if status:
        raise typer.Exit(status)


@app.command()
def bench(
    mode: Annotated[
        str, typer.Option(help="fanout, publish, inprocess, connections, replay or chaos.")
    ] = "fanout",
    server: Annotated[
        str | None,
        typer.Option(
            help="tidings, handrolled, socketio; a,b compares. "
            "(fanout: tidings; publish: tidings,handrolled)"
        ),
    ] = None,
    transport: Annotated[str, typer.Option(help="ws, sse, or ws,sse.")] = "ws",
    subscribers: Annotated[
        str | None,
        typer.Option(
            help="N, or several: 100,1000,5000 (fanout: 100; connections: 10000; chaos: 2000)."
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(help="Events to publish (fanout: 50; connections: 5; replay: 100)."),
    ] = None,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 20.0,
    size: Annotated[int, typer.Option(help="Payload padding, bytes.")] = 100,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            help="Give up after s without a delivery (chaos: s to wait for the last ones).",
            show_default="10; chaos: 120",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            help="publish, inprocess: measured seconds per phase; chaos: seconds of faults.",
            show_default="5; chaos: 60",
        ),
    ] = None,
    nodes: Annotated[int, typer.Option(help="chaos: hub nodes on one Redis.")] = 3,
    channels: Annotated[int, typer.Option(help="chaos: channels the events spread over.")] = 10,
    connections: Annotated[
        int, typer.Option(help="publish: keep-alive connections of the load generator.")
    ] = 16,
    batch: Annotated[int, typer.Option(help="publish, inprocess: events per batch.")] = 1000,
    repetitions: Annotated[int, typer.Option(help="replay: resumes timed per store.")] = 200,
    connect_timeout: Annotated[
        float | None,
        typer.Option(
            help="connections, chaos: seconds allowed for all handshakes.",
            show_default="120; chaos: 120 + N/20",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print results as JSON.", metavar="")
    ] = False,
    plot: Annotated[str | None, typer.Option(help="Write a PNG chart (needs matplotlib).")] = None,
) -> None:
    """Measure fan-out (CPU per delivery, memory, latency) against baselines, or publish
    throughput, connection capacity or resume time (--mode); see docs/performance.md."""
    from tidings.bench import BenchConfig, parse_list, run_bench
    from tidings.bench.modes import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"--mode is one of {', '.join(MODES)}")
    try:
        counts = [int(n) for n in parse_list(subscribers or "100")]
    except ValueError:
        raise typer.BadParameter("--subscribers takes integers like 100,1000") from None
    if mode == "fanout":
        _check_targets(parse_list(server or "tidings"), parse_list(transport))
        config = BenchConfig(
            events=50 if events is None else events,
            rate=rate,
            size=size,
            drain_timeout=10.0 if drain_timeout is None else drain_timeout,
        )
        status = run_bench(
            parse_list(server or "tidings"),
            parse_list(transport),
            counts,
            config,
            json_output=json_output,
            plot=plot,
        )
    else:
        if len(counts) != 1:
            raise typer.BadParameter("--mode connections takes one --subscribers N")
        chaos = mode == "chaos"
        count = counts[0] if subscribers else (2000 if chaos else 10_000)
        status = _bench_mode(
            mode,
            server=server,
            subscribers=count,
            events=events,
            size=size,
            drain_timeout=drain_timeout
            if drain_timeout is not None
            else (120.0 if chaos else 10.0),
            duration=duration if duration is not None else (60.0 if chaos else 5.0),
            connections=connections,
            batch=batch,
            repetitions=repetitions,
            connect_timeout=(
                connect_timeout
                if connect_timeout is not None
                else (120.0 + count / 20 if chaos else 120.0)
            ),
            rate=rate,
            nodes=nodes,
            channels=channels,
            json_output=json_output,
        )
    if status:
        raise typer.Exit(status)


def _check_targets(servers: list[str], transports: list[str]) -> None:
    """Stop before starting anything when a server asked for cannot run here."""
    from tidings.bench.targets import TARGETS, unavailable_reason

    for name in servers:
        target = TARGETS.get(name)
        if target is None:
            raise typer.BadParameter(f"--server is one of {', '.join(TARGETS)}")
        reasons = [unavailable_reason(target, t) for t in transports]
        if all(reasons):
            err.print(f"[red]tidings: cannot bench {name}:[/red] {escape(str(reasons[0]))}")
            raise typer.Exit(2)


def _bench_mode(mode: str, *, server: str | None, events: int | None, **values: Any) -> int:
    """Run a ``--mode`` other than fanout with the options it takes."""
    from tidings.bench import parse_list
    from tidings.bench.common import ModeOptions
    from tidings.bench.modes import run_mode
    from tidings.bench.targets import TARGETS

    servers = tuple(parse_list(server or "tidings,handrolled"))
    if any(name not in TARGETS for name in servers):
        raise typer.BadParameter(f"--server takes {', '.join(TARGETS)}")
    json_output = values.pop("json_output")
    for name in ("duration", "drain_timeout", "connect_timeout"):
        if values[name] <= 0:
            raise typer.BadParameter(f"--{name.replace('_', '-')} must be positive")
    if values["rate"] <= 0:
        raise typer.BadParameter("--rate must be positive")
    for name in ("subscribers", "connections", "batch", "repetitions", "nodes", "channels"):
        if values[name] < 1:
            raise typer.BadParameter(f"--{name} must be at least 1")
    if events is not None and events < 1:
        raise typer.BadParameter("--events must be at least 1")
    default_events = {"connections": 5, "replay": 100}.get(mode, 5)
    options = ModeOptions(
        servers=servers, events=default_events if events is None else events, **values
    )
    return run_mode(mode, options, json_output=json_output)


schema_app = typer.Typer(
    name="schema",
    help="Documents of the hub's registered event types: AsyncAPI 3.0, TypeScript.",
    no_args_is_help=True,
)
app.add_typer(schema_app)

SchemasOption = Annotated[
    str | None,
    typer.Option(
        "--schemas",
        help="Directory of JSON Schema files, one per event type (env TIDINGS_SCHEMAS).",
    ),
]
HubOption = Annotated[
    str | None,
    typer.Option(
        "--hub",
        help="MODULE:ATTRIBUTE of a Hub whose pydantic-registered types to include too.",
    ),
]
ConfigOption = Annotated[str | None, typer.Option("--config", help="TOML file of settings.")]
OutOption = Annotated[
    str | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
]


def _event_types(schemas: str | None, config: str | None, hub: str | None) -> Any:
    """The settings and event types a hub with these options would have."""
    from tidings.typed import EventTypes

    try:
        settings = load_settings(config_file=config, environ=os.environ, schemas=schemas)
        types = EventTypes(strict=settings.strict_types)
        if settings.schemas is not None:
            types.load_directory(settings.schemas)
    except (ValueError, OSError) as exc:
        err.print(f"[red]tidings: invalid settings:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if hub is not None:
        from tidings.node import Node

        found = _import_object(hub)
        if not isinstance(found, Node):
            err.print(f"[red]tidings: {escape(hub)} is not a tidings Hub[/red]")
            raise typer.Exit(2)
        for event in found.event_types:
            types.add(event)
        types.strict = types.strict or found.event_types.strict
    return settings, types


def _import_object(path: str) -> Any:
    import importlib

    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter("--hub takes MODULE:ATTRIBUTE, e.g. myapp.realtime:hub")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        err.print(f"[red]tidings: cannot import {escape(path)}:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    err.print(f"tidings: wrote {escape(out)}")


@schema_app.command("asyncapi")
def schema_asyncapi(
    out: OutOption = None,
    schemas: SchemasOption = None,
    hub: HubOption = None,
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="HOST:PORT clients reach (default: the listen address).")
    ] = None,
) -> None:
    """Write the AsyncAPI 3.0.0 document of the hub (what GET /asyncapi.json serves)."""
    from tidings.api.asyncapi import asyncapi_document

    settings, types = _event_types(schemas, config, hub)
    document = asyncapi_document(settings, types, host=host)
    _write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n", out)


@schema_app.command("typescript")
def schema_typescript(
    out: OutOption = None,
    schemas: SchemasOption = None,
    hub: HubOption = None,
    config: ConfigOption = None,
) -> None:
    """Write TypeScript definitions of the registered event types (for the JS client)."""
    from tidings.typescript import typescript_definitions

    _, types = _event_types(schemas, config, hub)
    _write(typescript_definitions(types), out)


outbox_app = typer.Typer(
    help="The transactional outbox the hub consumes (--source postgres://…).",
    no_args_is_help=True,
)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("init")
def outbox_init(
    url: Annotated[str, typer.Argument(help="The application's database: postgres://…")],
    table: Annotated[
        str | None, typer.Option("--table", help="Table name (default: the URL's table=).")
    ] = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Create it in the database instead of printing.", metavar=""),
    ] = False,
) -> None:
    """Print (or, with --apply, run) the outbox table, trigger and function DDL.

    Safe to run again: CREATE … IF NOT EXISTS, CREATE OR REPLACE. See docs/outbox.md.
    """
    from tidings.backends import redact_url
    from tidings.sources.postgres import apply_ddl, outbox_ddl, parse_url

    try:
        name = table or parse_url(url).table
        ddl = outbox_ddl(name)
    except ValueError as exc:
        err.print(f"[red]tidings: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    if not apply:
        sys.stdout.write(ddl)
        return
    try:
        asyncio.run(apply_ddl(url, name))
    except ImportError as exc:
        err.print(f"[red]tidings: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    except Exception as exc:
        err.print(
            f"[red]tidings: cannot create the outbox in {escape(redact_url(url))}:[/red] "
            f"{type(exc).__name__}: {escape(_first_line(exc, url))}"
        )
        raise typer.Exit(1) from None
    err.print(f"outbox table {name} ready in {escape(redact_url(url))}")


def _first_line(exc: BaseException, url: str) -> str:
    from urllib.parse import urlsplit

    text = (str(exc).strip().splitlines() or [""])[0][:300]
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return app(args=argv)
