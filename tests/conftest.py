from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from tests.ldap_server import LdapServer
from tests.redis_server import RedisServer
from tests.vcsim.server import VcsimServer
from vmpooler_core import config_loader
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NamedSink


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ldap_server() -> Iterator[LdapServer]:
    """A real slapd on loopback with the users of tests.ldap_server.USERS."""
    server = LdapServer().start()
    yield server
    server.remove()


TEMPLATE = "templates/centos-6-x86_64"  # the vCenter simulator's template
StartSim = Callable[..., VcsimServer]


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """`start_sim(folders, port=None, password=None, clone_fail_percent=...)`: govmomi's vCenter simulator
    (tests/vcsim), on `port` if given (to come back where a stopped one was), accepting only `password`
    if given (else its default); every one started is stopped at the end of the test. These tests fail,
    never skip, when it cannot be built or started, unless VMPOOLER_SKIP_VCSIM=1."""
    if os.environ.get("VMPOOLER_SKIP_VCSIM") == "1":
        pytest.skip("VMPOOLER_SKIP_VCSIM=1")
    started: list[VcsimServer] = []

    def start(folders: tuple[str, ...] = ("vmpooler/pool1",), port: int | None = None,
              password: str | None = None, **kwargs: Any) -> VcsimServer:
        extra = ["-listen", f"127.0.0.1:{port}"] if port else []
        if password is not None:
            extra += ["-password", password]
        sim = VcsimServer(templates=[TEMPLATE], folders=list(folders), extra_args=extra, **kwargs)
        started.append(sim.start())
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A real Redis, emptied before each test so tests never see each other's data."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.script_flush()
    client.close()
    return redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def inventory(aredis: aioredis.Redis) -> Inventory:
    return Inventory(aredis)


def make_config(text: str, **env: str) -> Config:
    return config_loader.load(text=text, env=env, source="test.yaml")


class StatsdNames(NamedSink):
    """The metrics sent, by the names and values the statsd sink would send them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []  # (increment | gauge | timing, name, value)

    def send_count(self, label: str) -> None:
        self.sent.append(("increment", label, 1))

    def send_gauge(self, label: str, value: float) -> None:
        self.sent.append(("gauge", label, value))

    def send_timing(self, label: str, seconds: float) -> None:
        self.sent.append(("timing", label, seconds))

    def close(self) -> None:
        pass

    @property
    def counts(self) -> list[str]:
        return [label for kind, label, _ in self.sent if kind == "increment"]

    def last(self, kind: str, label: str) -> float | None:
        values = [v for k, name, v in self.sent if k == kind and name == label]
        return values[-1] if values else None


POOLS_YAML = """
:config:
  domain: company.com
  vm_lifetime_auth: 2
:providers: {dummy: {}}
:pools:
  - name: pool1
    alias: [poolone]
    size: 5
  - name: pool2
    size: 10
"""


@pytest.fixture
def config() -> Config:
    return make_config(POOLS_YAML)
