"""`--redis-from-config` (issue 20, report 7): the Redis backend on the vmpooler config's own `redis:`
section, chosen through the same layers as every setting; the rule between it and a Redis URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.cli.conftest import POOLS_YAML, Vmp, ready
from vmpooler_cli.errors import CliError
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_cli.settings import resolve


def test_redis_from_config_picks_the_redis_backend_at_every_layer() -> None:
    for options, env, file in (({"redis_from_config": True}, {}, {}),
                               ({}, {"VMPOOLER_REDIS_FROM_CONFIG": "1"}, {}),
                               ({}, {}, {"redis_from_config": "true"})):
        s = resolve(options, env, file)
        assert (s.backend, s.redis_from_config, s.redis_url) == ("redis", True, None), (options, env, file)
    # Off, it names nothing: the default API.
    assert resolve({}, {"VMPOOLER_REDIS_FROM_CONFIG": "0"}, {}).backend == "api"
    assert resolve({"redis_from_config": None}, {}, {}).backend == "api"


def test_the_highest_layer_naming_redis_says_how() -> None:
    # The option beats a URL lower down, and a URL on the command line beats the flag in the file.
    s = resolve({"redis_from_config": True}, {"VMPOOLER_REDIS_URL": "redis://r/0"}, {})
    assert (s.redis_from_config, s.redis_url) == (True, None)
    s = resolve({"redis_url": "redis://o/0"}, {}, {"redis_from_config": "true"})
    assert (s.redis_from_config, s.redis_url) == (False, "redis://o/0")
    # One layer naming both: the URL, as the API wins over Redis.
    s = resolve({}, {"VMPOOLER_REDIS_URL": "redis://e/0", "VMPOOLER_REDIS_FROM_CONFIG": "1"}, {})
    assert (s.backend, s.redis_from_config, s.redis_url) == ("redis", False, "redis://e/0")
    assert resolve({}, {"VMPOOLER_URL": "http://e:1", "VMPOOLER_REDIS_FROM_CONFIG": "1"}, {}).backend == "api"


@pytest.mark.parametrize(("options", "message"), [
    ({"redis_url": "redis://r/0", "redis_from_config": True}, "--redis and --redis-from-config are mutually"),
    ({"url": "http://o:1", "redis_from_config": True}, "--api and --redis-from-config are mutually"),
])
def test_redis_from_config_is_exclusive_on_the_command_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(CliError, match=message) as err:
        resolve(options, {}, {})
    assert err.value.code == ExitCode.USAGE


def test_a_bad_flag_value_names_its_origin() -> None:
    with pytest.raises(CliError, match="env VMPOOLER_REDIS_FROM_CONFIG: redis_from_config must be true or false"):
        resolve({}, {"VMPOOLER_REDIS_FROM_CONFIG": "sometimes"}, {})


def test_redis_from_config_uses_the_configs_redis_section(tmp_path: Path, redis_url: str,
                                                          sync_redis: redis.Redis) -> None:
    """No URL anywhere: the config's `redis:` (here server/port/db, as the daemon reads them) is used."""
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    path = tmp_path / "vmpooler.yaml"
    path.write_text(POOLS_YAML + f"redis:\n  server: 127.0.0.1\n  port: {port}\n  db: 0\n")
    ready(sync_redis, "pool2", "vm9")
    assert Vmp("from-config", ["--redis-from-config", "--config", str(path)]).ok("checkout", "pool2").stdout == \
        "vm9.company.com\n"
    # Without --config: the usual usage error.
    result = Vmp("no config", ["--redis-from-config"]).fails(ExitCode.USAGE, "pools")
    assert "--config" in result.stderr
