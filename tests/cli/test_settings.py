"""Layered settings: options > environment > ~/.config/vmpooler/cli.yaml (XDG) > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.cli.conftest import POOLS_YAML, Vmp, ready
from vmpooler_cli.errors import CliError
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_cli.settings import DEFAULT_URL, read_file, resolve, settings_path


def test_defaults() -> None:
    s = resolve({}, {}, {})
    assert (s.backend, s.url, s.redis_url, s.token, s.timeout, s.connect_timeout) == ("api", DEFAULT_URL, None,
                                                                                      None, 30.0, 3.0)


def test_options_beat_environment_beat_file() -> None:
    env = {"VMPOOLER_URL": "http://env:1", "VMPOOLER_TOKEN": "envtoken", "VMPOOLER_TIMEOUT": "5"}
    file = {"url": "http://file:1", "token": "filetoken", "user": "fileuser", "timeout": "9"}
    s = resolve({"url": "http://opt:1", "token": None}, env, file)
    assert (s.url, s.token, s.user, s.timeout) == ("http://opt:1", "envtoken", "fileuser", 5.0)
    assert s.origin == {"url": "option", "token": "env VMPOOLER_TOKEN", "timeout": "env VMPOOLER_TIMEOUT",
                        "user": "settings file"}


def test_the_highest_layer_naming_a_server_picks_the_backend() -> None:
    assert resolve({}, {"VMPOOLER_REDIS_URL": "redis://r/0"}, {"url": "http://f:1"}).backend == "redis"
    assert resolve({"url": "http://o:1"}, {"VMPOOLER_REDIS_URL": "redis://r/0"}, {}).backend == "api"
    assert resolve({}, {}, {"redis_url": "redis://r/0"}).backend == "redis"
    # One layer naming both: the API.
    assert resolve({}, {"VMPOOLER_URL": "http://e:1", "VMPOOLER_REDIS_URL": "redis://r/0"}, {}).backend == "api"
    with pytest.raises(CliError) as err:
        resolve({"url": "http://o:1", "redis_url": "redis://r/0"}, {}, {})
    assert err.value.code == ExitCode.USAGE


@pytest.mark.parametrize("value", ["0", "-1", "x", "99999"])
def test_bad_timeouts(value: str) -> None:
    with pytest.raises(CliError) as err:
        resolve({}, {"VMPOOLER_TIMEOUT": value}, {})
    assert err.value.code == ExitCode.USAGE and "VMPOOLER_TIMEOUT" in str(err.value)


def test_settings_path_honours_xdg(tmp_path: Path) -> None:
    assert settings_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/vmpooler/cli.yaml")
    assert settings_path({"HOME": "/home/jdoe"}) == Path("/home/jdoe/.config/vmpooler/cli.yaml")


def test_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    assert read_file(path) == {}
    path.write_text("redis_url: redis://r/0\nconfig: pools.yaml\ntimeout: 10\n")
    assert read_file(path) == {"redis_url": "redis://r/0", "config": str(tmp_path / "pools.yaml"), "timeout": "10"}
    path.write_text("redis-url: redis://r/0\n")
    with pytest.raises(CliError, match="unknown setting 'redis-url'"):
        read_file(path)
    path.write_text("- a\n")
    with pytest.raises(CliError, match="expected a mapping"):
        read_file(path)
    path.write_text("url: [\n")
    with pytest.raises(CliError, match="invalid YAML"):
        read_file(path)


def test_the_settings_file_is_used_by_the_command(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    """No options, no environment: everything comes from $XDG_CONFIG_HOME/vmpooler/cli.yaml."""
    (tmp_path / "pools.yaml").write_text(POOLS_YAML)
    settings = tmp_path / "xdg" / "vmpooler" / "cli.yaml"
    settings.parent.mkdir(parents=True)
    settings.write_text(f"redis_url: {redis_url}\nconfig: {tmp_path / 'pools.yaml'}\n")
    ready(sync_redis, "pool2", "vm9")
    assert Vmp("file", []).ok("checkout", "pool2").stdout == "vm9.company.com\n"
    # The environment beats the file: an API nobody listens on.
    result = Vmp("env", []).fails(ExitCode.UNREACHABLE, "pools", env={"VMPOOLER_URL": "http://127.0.0.1:1"})
    assert "127.0.0.1:1" in result.stderr
    settings.write_text("bogus: 1\n")
    assert str(settings) in Vmp("bad", []).fails(ExitCode.ERROR, "pools").stderr


def test_vmpooler_config_may_hold_the_yaml_itself(redis_url: str, sync_redis: redis.Redis) -> None:
    """VMPOOLER_CONFIG is a path or, as the daemon also accepts, the YAML document itself."""
    ready(sync_redis, "pool1", "vm1")
    env = {"VMPOOLER_REDIS_URL": redis_url, "VMPOOLER_CONFIG": POOLS_YAML}
    assert Vmp("env", []).ok("checkout", "poolone", env=env).stdout == "vm1.company.com\n"
