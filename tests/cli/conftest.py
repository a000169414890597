"""Fixtures for the `vmpooler` command's tests: both backends against one real Redis.

`vmp` runs the command in-process (click's CliRunner) once per backend: directly on Redis, and over
HTTP against our real API app served by uvicorn in a background thread. The same assertions run on
both, which is what "one behaviour, two backends" means.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from tests.redis_server import RedisServer, free_port
from vmpooler_cli.app import cli
from vmpooler_core import config_loader
from vmpooler_core.auth import hash_password
from vmpooler_core.keys import Keys

K = Keys()
PASSWORD = "s3cr3t"

POOLS_YAML = """
:config:
  domain: company.com
:providers: {dummy: {}}
:pools:
  - name: pool1
    alias: [poolone]
    size: 5
  - name: pool2
    size: 10
"""

# The users jdoe and eve, password PASSWORD. A cheap hash (1,000 rounds) keeps the many Basic-auth checks
# of the tests fast.
USERS_AUTH = f"""
:auth:
  provider: users
  users:
    jdoe: '{hash_password(PASSWORD, iterations=1000)}'
    eve: '{hash_password(PASSWORD, iterations=1000)}'
"""

AUTH_YAML = f"""
:config:
  vm_lifetime_auth: 2
{USERS_AUTH.strip()}
:providers: {{dummy: {{}}}}
:pools:
  - name: pool1
    size: 5
"""


class LiveServer:
    """An ASGI app served by uvicorn on a free port, in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"http-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the app did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def live_api(config_text: str, redis_url: str, port: int | None = None) -> LiveServer:
    """Our real API app (vmpoolerd.api.create_app) for this config, on the given Redis (and port)."""
    from vmpoolerd.api.app import create_app

    config = config_loader.load(text=config_text, env={"VMPOOLER_REDIS_URL": redis_url}, source="test.yaml")
    return LiveServer(create_app(config), port)


@pytest.fixture(scope="session")
def api_servers(redis_server: RedisServer) -> Iterator[Callable[[str], str]]:
    """config text -> URL of a live API for it; one server per config for the whole session (each
    test still starts from an empty Redis: the `redis_url` fixture flushes it)."""
    servers: dict[str, LiveServer] = {}

    def serve(text: str) -> str:
        if text not in servers:
            servers[text] = live_api(text, redis_server.url)
        return servers[text].url

    yield serve
    for server in servers.values():
        server.stop()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings leak in from the machine: no VMPOOLER_* variables, an empty settings directory and an
    empty cache (no server's API version remembered)."""
    import os

    for name in list(os.environ):
        if name.startswith("VMPOOLER_") or name in ("NO_COLOR", "FORCE_COLOR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@dataclass
class Vmp:
    """`vmpooler` bound to one backend: `vmp("checkout", "pool1")` -> click Result."""

    kind: str
    base: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, [*self.base, *args], input=input, env={**self.env, **(env or {})},
                                  catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = self(*args, input=input, env=env)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        assert result.stderr == ""
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", env=env).stdout)

    def fails(self, code: int, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        """Runs a command that must fail with `code`, one `vmpooler: error:` line and no stdout."""
        result = self(*args, input=input, env=env)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        assert result.stderr.startswith("vmpooler: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        return result


@pytest.fixture
def make_vmp(redis_url: str, api_servers: Callable[[str], str], tmp_path: Path) -> Callable[..., Vmp]:
    """kind ("redis", "api": our API, the version the CLI picks; "api-v1": our API v1, named by the URL),
    config text -> `vmpooler` on that backend."""
    def make(kind: str, config_text: str = POOLS_YAML) -> Vmp:
        if kind.startswith("api"):
            return Vmp(kind, ["--api", api_servers(config_text) + ("/api/v1" if kind == "api-v1" else "")])
        path = tmp_path / f"vmpooler-{abs(hash(config_text))}.yaml"
        path.write_text(config_text)
        return Vmp(kind, ["--redis", redis_url, "--config", str(path)])

    return make


@pytest.fixture(params=["redis", "api"])
def vmp(request: pytest.FixtureRequest, make_vmp: Callable[[str, str], Vmp]) -> Vmp:
    return make_vmp(request.param, POOLS_YAML)


@pytest.fixture(params=["redis", "api-v1"])
def vmp_v1(request: pytest.FixtureRequest, make_vmp: Callable[[str, str], Vmp]) -> Vmp:
    """For what passes the server's documents through as sent (`status --json`): the Redis backend's are
    API v1's, and API v3 adds its own keys (`lastBoot`, `requested`)."""
    return make_vmp(request.param, POOLS_YAML)


@pytest.fixture(params=["redis", "api"])
def auth_vmp(request: pytest.FixtureRequest, make_vmp: Callable[[str, str], Vmp]) -> Vmp:
    return make_vmp(request.param, AUTH_YAML)


@pytest.fixture
def both(make_vmp: Callable[[str, str], Vmp]) -> tuple[Vmp, Vmp]:
    """The Redis backend and our API v1 (whose /status document is the one the Redis backend makes)."""
    return make_vmp("redis", POOLS_YAML), make_vmp("api-v1", POOLS_YAML)


def ready(r: redis.Redis, pool: str, *hosts: str) -> None:
    """Put VMs in a pool's ready set, as the manager would."""
    for host in hosts:
        r.sadd(K.ready(pool), host)
        r.hset(K.vm(host), mapping={"template": pool, "pool": pool, "clone": "2016-07-25 10:00:00 +0000"})


def members(r: redis.Redis, state: str, pool: str) -> set[str]:
    return set(r.smembers(K.state(state, pool)))  # type: ignore[arg-type]
