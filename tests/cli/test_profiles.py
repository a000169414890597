"""Several servers (issue 13): named profiles in cli.yaml; `--config FILE` alone on that config's own
Redis, as the daemon would use it; `--redis URL` without a password taking the config's."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.cli.conftest import POOLS_YAML, K, Vmp, ready
from tests.redis_server import RedisServer
from vmpooler_cli.errors import CliError
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_cli.settings import read_file, resolve


def test_a_profile_is_laid_over_the_files_top_level(tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text("token: top\ntimeout: 9\nprofile: lab\nprofiles:\n"
                    "  lab: {redis_url: 'redis://lab/0', config: lab.yaml}\n"
                    "  prod: {url: 'https://prod', token: prodtoken}\n  empty:\n")
    assert read_file(path) == {"token": "top", "timeout": "9", "redis_url": "redis://lab/0",
                               "config": str(tmp_path / "lab.yaml")}
    assert read_file(path, "prod") == {"token": "prodtoken", "timeout": "9", "url": "https://prod"}
    assert read_file(path, "empty") == {"token": "top", "timeout": "9"}
    with pytest.raises(CliError, match=r"no profile 'nope' in .*cli.yaml \(profiles: empty, lab, prod\)") as err:
        read_file(path, "nope")
    assert err.value.code == ExitCode.USAGE
    path.write_text("profiles:\n  lab: {redis-url: x}\n")
    with pytest.raises(CliError, match="unknown setting in profile 'lab': 'redis-url'"):
        read_file(path, "lab")
    path.write_text("profiles: [a, b]\n")
    with pytest.raises(CliError, match="`profiles` must map"):
        read_file(path)
    with pytest.raises(CliError, match="has no `profiles:`"):
        read_file(tmp_path / "none.yaml", "lab")


def test_profiles_pick_the_server(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    (tmp_path / "pools.yaml").write_text(POOLS_YAML)
    settings = tmp_path / "xdg" / "vmpooler" / "cli.yaml"
    settings.parent.mkdir(parents=True)
    settings.write_text(f"profile: lab\nprofiles:\n  lab: {{redis_url: '{redis_url}', config: "
                        f"'{tmp_path / 'pools.yaml'}'}}\n  prod: {{url: 'http://127.0.0.1:1'}}\n")
    ready(sync_redis, "pool2", "vm9")
    assert Vmp("default profile", []).ok("checkout", "pool2").stdout == "vm9.company.com\n"
    for chosen in (Vmp("option", ["--profile", "prod"]), Vmp("env", [], {"VMPOOLER_PROFILE": "prod"})):
        assert "127.0.0.1:1" in chosen.fails(ExitCode.UNREACHABLE, "pools").stderr
    assert "profiles: lab, prod" in Vmp("typo", ["--profile", "prdo"]).fails(ExitCode.USAGE, "pools").stderr


def test_a_config_alone_means_its_redis() -> None:
    for options, env, file in (({"config": "c.yaml"}, {}, {}), ({}, {"VMPOOLER_CONFIG": "c.yaml"}, {}),
                               ({}, {}, {"config": "c.yaml"})):
        s = resolve(options, env, file)
        assert (s.backend, s.redis_from_config, s.redis_url) == ("redis", True, None)
    # A server named anywhere still wins, as before: the config is then that server's pools.
    assert resolve({"config": "c.yaml"}, {"VMPOOLER_REDIS_URL": "redis://r/0"}, {}).redis_url == "redis://r/0"
    assert resolve({"config": "c.yaml"}, {}, {"url": "http://f:1"}).backend == "api"
    assert resolve({"config": "c.yaml"}, {"VMPOOLER_REDIS_FROM_CONFIG": "no"}, {}).backend == "api"  # said no


def test_the_configs_redis_password_is_used(tmp_path: Path) -> None:
    """One Redis that wants a password: reached with the config alone, and with a URL that has none."""
    server = RedisServer(password="pa55").start()
    try:
        path = tmp_path / "vmpooler.yaml"
        path.write_text(POOLS_YAML + f"redis:\n  server: 127.0.0.1\n  port: {server.port}\n  password: pa55\n")
        direct = redis.Redis(port=server.port, password="pa55", decode_responses=True)
        ready(direct, "pool2", "vm8", "vm9")
        url = f"redis://127.0.0.1:{server.port}/0"
        assert Vmp("config alone", ["--config", str(path)]).ok("checkout", "pool2").stdout.endswith(".company.com\n")
        Vmp("url", ["--redis", url, "--config", str(path)]).ok("checkout", "pool2")
        assert direct.scard(K.running("pool2")) == 2
        # A password in the URL is the URL's own, right or wrong.
        wrong = Vmp("wrong", ["--redis", f"redis://:nope@127.0.0.1:{server.port}/0", "--config", str(path)])
        wrong.fails(ExitCode.UNAUTHORIZED, "pools")
        direct.close()
    finally:
        server.stop()
