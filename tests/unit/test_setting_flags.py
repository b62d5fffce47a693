"""Every setting is a ``tidings serve`` flag and an environment variable, made from the
settings model; a flag wins over the environment, which wins over the TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tidings.workers
from tidings.cli import app
from tidings.setting_flags import SWITCHES, TOML_ONLY, flag_name
from tidings.settings import ENV_PREFIX, Settings

FIELDS = sorted(set(Settings.model_fields) - TOML_ONLY)

SCHEMAS = str(Path(__file__).resolve().parents[1] / "data" / "schemas")

#: A value each setting accepts from a flag and from the environment, and how it reads.
SAMPLES: dict[str, tuple[str, Any]] = {
    "host": ("127.0.0.2", "127.0.0.2"),
    "port": ("0", 0),
    "broker": ("memory://", "memory://"),
    "store": ("memory://", "memory://"),
    "slow_consumer": ("drop", "drop"),
    "jwt_secret": ("a-secret-long-enough-for-hs256-0123456789", None),
    "command_secret": ("whsec_c2VjcmV0LWtleS1ieXRlcw==", None),
    "command_url": ("http://127.0.0.1:9/commands", "http://127.0.0.1:9/commands"),
    "jwt_public_key": ("key.pem", "key.pem"),
    "jwks_file": ("jwks.json", "jwks.json"),
    "jwt_audience": ("hub", "hub"),
    "jwt_issuer": ("issuer", "issuer"),
    "node_id": ("edge-1", "edge-1"),
    "worker_ports": ("9100", 9100),
    "connect_hook": ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
    "api_keys": ("ops=k3y", None),
    "allowed_origins": ("https://a.example", ("https://a.example",)),
    "auto_channels": ("role:{role}", ("role:{role}",)),
    "sources": (
        "postgres://app@db.example/app?table=app_outbox",
        ("postgres://app@db.example/app?table=app_outbox",),
    ),
    "jwt_claims": ("sub=username", {"sub": "username"}),
    "role_claim": ("realm_access.roles", "realm_access.roles"),
    "role_channels": ("viewer=dash:*,alerts", {"viewer": ("dash:*", "alerts")}),
    "role_publish": ("ops=ops:*", {"ops": ("ops:*",)}),
    "allow_anonymous": ("true", True),
    "webhook_allow_private": ("true", True),
    "webhook_retry_schedule": ("2.5", (2.5,)),
    "data_plane": ("asgi", "asgi"),
    "workers": ("1", 1),
    "log_format": ("json", "json"),
    "log_level": ("debug", "debug"),
    "schemas": (SCHEMAS, SCHEMAS),
    "strict_types": ("true", True),
}


def _sample(name: str) -> tuple[str, Any]:
    if name in SAMPLES:
        return SAMPLES[name]
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    if isinstance(default, int) and not isinstance(default, bool):
        return str(default + 7), default + 7
    # float, or None for an optional number of seconds
    value = (default or 10.0) + 7.5
    return str(value), value


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """What `tidings serve` would have served, instead of serving it."""
    seen: list[Settings] = []
    monkeypatch.setattr(tidings.workers, "run", seen.append)
    for name in FIELDS:
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)
    return seen


def _serve(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, ["serve", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_help_lists_every_setting_with_its_default_and_variable() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "250"})
    for name in FIELDS:
        assert flag_name(name) in result.output, name
        assert ENV_PREFIX + name.upper() in result.output, name
    assert "Listen port (default 8000; env TIDINGS_PORT)." in result.output
    (switch,) = [line for line in result.output.splitlines() if "--allow-anonymous" in line]
    assert "<bool>" not in switch  # a switch takes no value


@pytest.mark.parametrize("name", FIELDS)
def test_every_setting_has_a_working_flag_and_variable(name: str, served: list[Settings]) -> None:
    text, expected = _sample(name)
    if name in SWITCHES:
        _serve([flag_name(name)])  # a switch: no value
    else:
        _serve([flag_name(name), text])
    _serve([], env={ENV_PREFIX + name.upper(): text})
    by_flag, by_env = served
    for settings in (by_flag, by_env):
        value = getattr(settings, name)
        if name in {"jwt_secret", "command_secret"}:
            assert value.get_secret_value() == text
        elif name == "api_keys":
            assert value["ops"].get_secret_value() == "k3y"
        else:
            assert value == expected


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, served: list[Settings]
) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text("history_size = 5\nqueue_size = 5\nheartbeat = 5\n")
    _serve(
        ["--config", str(config), "--history-size", "7"],
        env={"TIDINGS_HISTORY_SIZE": "6", "TIDINGS_QUEUE_SIZE": "6"},
    )
    (settings,) = served
    assert (settings.history_size, settings.queue_size, settings.heartbeat) == (7, 6, 5.0)


def test_a_bad_value_names_the_setting(served: list[Settings]) -> None:
    result = CliRunner().invoke(app, ["serve", "--slow-consumer", "explode"])
    assert result.exit_code != 0
    assert "explode" in result.output and served == []


def test_the_readme_table_is_the_model() -> None:
    """The README's configuration table is made from the model; regenerate it with
    ``python -m tidings.setting_flags`` when a setting changes."""
    from tidings.setting_flags import settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("\n", readme.index("<!-- settings table:")) + 1
    end = readme.index("<!-- end of settings table -->")
    assert readme[start:end] == settings_table()


@pytest.mark.parametrize(
    ("args", "env", "config", "said"),
    [
        ([], {"TIDINGS_PORT": "abc"}, None, "TIDINGS_PORT: port: Input should be a valid integer"),
        (["--history-size", "-3"], {}, None, "--history-size: history_size: Input should be"),
        ([], {}, "port = [\n", ": not valid TOML: "),
        ([], {}, "histroy_size = 3\n", "'histroy_size' is not a setting (did you mean"),
    ],
)
def test_a_bad_setting_names_its_source_and_the_setting(
    tmp_path: Path,
    served: list[Settings],
    args: list[str],
    env: dict[str, str],
    config: str | None,
    said: str,
) -> None:
    if config is not None:
        (tmp_path / "t.toml").write_text(config)
        args = [*args, "--config", str(tmp_path / "t.toml")]
    result = CliRunner().invoke(app, ["serve", *args], env={"COLUMNS": "300", **env})
    assert result.exit_code == 2 and served == []
    assert said in result.output
    assert "pydantic" not in result.output and "errors.pydantic.dev" not in result.output


def test_an_unknown_tidings_variable_is_warned_about_with_the_closest_name(
    served: list[Settings],
) -> None:
    result = CliRunner().invoke(
        app, ["serve"], env={"COLUMNS": "300", "TIDINGS_HISTROY_SIZE": "5", "TIDINGS_URL": "x"}
    )
    assert result.exit_code == 0
    assert "TIDINGS_HISTROY_SIZE is not a setting and is ignored; did you mean " in result.output
    assert "TIDINGS_HISTORY_SIZE" in result.output
    assert "TIDINGS_URL" not in result.output  # read by publish and listen, not a setting


def test_routes_come_from_the_toml_file_only(tmp_path: Path, served: list[Settings]) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text(
        '[[routes]]\npath = "/n/{net_id}/events"\ntransport = "sse"\n'
        'channels = ["network:{net_id}"]\n'
    )
    _serve(["--config", str(config)])
    (settings,) = served
    (route,) = settings.routes
    assert (route.path, route.transport, route.channels, route.message) == (
        "/n/{net_id}/events",
        "sse",
        ("network:{net_id}",),
        "full",
    )
