"""Settings: defaults, then a TOML file, then TIDINGS_* variables, then explicit values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tidings.settings import Settings, SettingsError, load_settings, parse_api_keys


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tidings.toml"
    path.write_text(text)
    return path


def test_defaults_follow_the_spec() -> None:
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.broker == "memory://"
    assert settings.store == "memory://"
    assert settings.history_size == 100
    assert settings.history_ttl is None
    assert settings.heartbeat == 15
    assert settings.ping_interval == 30
    assert settings.queue_size == 1000
    assert settings.queue_bytes == 4 * 1024 * 1024
    assert settings.slow_consumer == "disconnect"
    assert settings.max_connections == 10_000
    assert settings.connection_rate == 600
    assert settings.max_event_size == 64 * 1024
    assert settings.max_batch_size == 1000
    assert settings.sse_retry == 3000
    assert settings.workers == 1
    assert settings.allow_anonymous is False
    assert settings.open_mode


def test_the_environment_is_not_read_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_PORT", "9999")
    assert load_settings().port == 8000
    assert load_settings(environ={"TIDINGS_PORT": "9999"}).port == 9999


def test_toml_top_level_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9001\nslow-consumer = "drop"\nhistory_ttl = 60.5\n')
    settings = load_settings(config_file=path)
    assert settings.port == 9001
    assert settings.slow_consumer == "drop"
    assert settings.history_ttl == 60.5


def test_toml_tidings_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[tidings]\nhistory-size = 5\nallowed_origins = ["https://a.example"]\n')
    settings = load_settings(config_file=str(path))
    assert settings.history_size == 5
    assert settings.allowed_origins == ("https://a.example",)


def test_environment_values() -> None:
    settings = load_settings(
        environ={
            "TIDINGS_HOST": "0.0.0.0",
            "TIDINGS_HISTORY_TTL": "2.5",
            "TIDINGS_ALLOW_ANONYMOUS": "true",
            "TIDINGS_API_KEYS": "ops=k1, ci=k2=x",
            "TIDINGS_ALLOWED_ORIGINS": "https://a.example, https://b.example,",
            "TIDINGS_SLOW_CONSUMER": "drop",
            "UNRELATED": "ignored",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.history_ttl == 2.5
    assert settings.allow_anonymous is True
    assert {name: key.get_secret_value() for name, key in settings.api_keys.items()} == {
        "ops": "k1",
        "ci": "k2=x",
    }
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.slow_consumer == "drop"
    assert not settings.open_mode


def test_empty_environment_value_turns_an_optional_setting_off(tmp_path: Path) -> None:
    path = write(tmp_path, "history_ttl = 30\nmax_connection_age = 600\n")
    settings = load_settings(
        config_file=path,
        environ={"TIDINGS_HISTORY_TTL": "", "TIDINGS_MAX_CONNECTION_AGE": ""},
    )
    assert settings.history_ttl is None
    assert settings.max_connection_age is None


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1001\nhistory_size = 7\nheartbeat = 3\n")
    environ = {"TIDINGS_PORT": "1002", "TIDINGS_HISTORY_SIZE": "8"}
    settings = load_settings(config_file=path, environ=environ, port=1003)
    assert settings.port == 1003
    assert settings.history_size == 8
    assert settings.heartbeat == 3


def test_none_overrides_fall_through(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1001\n")
    settings = load_settings(config_file=path, environ={}, port=None, history_size=None)
    assert settings.port == 1001
    assert settings.history_size == 100


def test_false_and_zero_overrides_are_values() -> None:
    settings = load_settings(
        environ={"TIDINGS_ALLOW_ANONYMOUS": "true", "TIDINGS_PORT": "8080"},
        allow_anonymous=False,
        port=0,
    )
    assert settings.allow_anonymous is False
    assert settings.port == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": 70000},
        {"port": -1},
        {"history_size": -1},
        {"history_ttl": 0},
        {"queue_size": 0},
        {"heartbeat": 0},
        {"slow_consumer": "block"},
        {"log_format": "xml"},
        {"log_level": "verbose"},
        {"no_such_setting": 1},
    ],
)
def test_invalid_values_are_refused(overrides: dict[str, object]) -> None:
    (name,) = overrides
    with pytest.raises(SettingsError, match=f"--{name.replace('_', '-')}: "):
        load_settings(**overrides)


def test_invalid_environment_value_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^TIDINGS_PORT: port: "):
        load_settings(environ={"TIDINGS_PORT": "eighty"})


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"key 'histroy_size'.*did you mean 'history_size'"):
        load_settings(config_file=write(tmp_path, "histroy_size = 5\n"))


def test_log_level_is_normalised() -> None:
    assert load_settings(log_level="DEBUG").log_level == "debug"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_secrets_are_hidden_in_repr() -> None:
    settings = load_settings(jwt_secret="s3cret-value", api_keys={"ops": "k3y-value"})
    assert "s3cret-value" not in repr(settings)
    assert "k3y-value" not in repr(settings)
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "s3cret-value"


@pytest.mark.parametrize(
    "overrides",
    [
        {"jwt_secret": "s"},
        {"jwt_public_key": "/keys/pub.pem"},
        {"jwks_file": "/keys/jwks.json"},
        {"api_keys": {"ops": "k"}},
    ],
)
def test_any_credential_ends_open_mode(overrides: dict[str, object]) -> None:
    assert not load_settings(**overrides).open_mode


def test_parse_api_keys() -> None:
    assert parse_api_keys(["ops=k1", "ci=a=b"]) == {"ops": "k1", "ci": "a=b"}


@pytest.mark.parametrize("item", ["nokey", "=k", "name=", ""])
def test_parse_api_keys_refuses_malformed_items(item: str) -> None:
    with pytest.raises(ValueError, match="NAME=KEY"):
        parse_api_keys([item])


def test_malformed_api_keys_in_the_environment_are_refused() -> None:
    with pytest.raises(ValueError, match="NAME=KEY"):
        load_settings(environ={"TIDINGS_API_KEYS": "ops"})


def test_settings_can_be_built_directly() -> None:
    assert Settings(port=1234).port == 1234


def test_redact_url_hides_passwords_only() -> None:
    from tidings.backends import redact_url

    assert redact_url("redis://:s3cret@db:6379/0?prefix=t") == "redis://:***@db:6379/0?prefix=t"
    assert redact_url("rediss://user:pw@db/1") == "rediss://user:***@db/1"
    assert redact_url("redis://db:6379/0") == "redis://db:6379/0"
    assert redact_url("sqlite:////var/lib/t.db") == "sqlite:////var/lib/t.db"
