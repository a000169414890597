"""Fixtures for the manager's tests: managers on the real Redis of tests/conftest.py, a clock the tests
move (to age VMs by hours without waiting), and metrics that remember what was sent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import StatsdNames, make_config
from tests.redis_server import RedisServer
from vmpooler_core.config import Config
from vmpooler_core.keys import STATES, Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import Provider
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers

MakeManager = Callable[..., Awaitable[Manager]]
MakeOther = Callable[..., Awaitable[tuple[Manager, redis.Redis]]]


class FakeClock:
    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Small times, so that tests run in a blink: every pass re-checks ready VMs, and outages are retried
# within half a second.
APP_DEFAULTS: dict[str, object] = {"task_limit": 4, "vm_checktime": 0, "manager_lease_seconds": 5,
                                   "manager_loop_seconds": 0.2, "manager_backoff_max": 0.5}


def on_redis(config: Config, url: str) -> Config:
    """`config` with its Redis at `url` (a test server), for what reads the settings: the dummy provider."""
    return dataclasses.replace(config, redis=dataclasses.replace(config.redis, url=url))


def dummy_config(pools: str, *, dummy: str = "clone_time: 0\n    boot_time: 0", **app: object) -> Config:
    """A configuration with the dummy provider: `pools` is the YAML list body, `dummy` the provider's
    options, `app` overrides of the `config:` section."""
    settings = "\n".join(f"  {key}: {value}" for key, value in {**APP_DEFAULTS, **app}.items())
    return make_config(f":config:\n{settings}\n:providers:\n  :dummy:\n    {dummy}\n:pools:\n{pools}\n")


@pytest.fixture(autouse=True)
def _manager_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Keep the manager's INFO lines: several tests count them."""
    caplog.set_level(logging.INFO, logger="vmpooler")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> StatsdNames:
    return StatsdNames()


@pytest.fixture
async def make_manager(aredis: aioredis.Redis, redis_url: str, clock: FakeClock,
                       metrics: StatsdNames) -> AsyncIterator[MakeManager]:
    """Build managers (same Redis, same clock); every one is shut down, its providers closed, at the end."""
    made: list[tuple[Manager, dict[str, Provider]]] = []

    async def make(config: Config, **kwargs: Any) -> Manager:
        config = on_redis(config, redis_url)
        providers = kwargs.pop("providers", None) or build_providers(config)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("stop_grace", 5.0)
        manager = Manager(config, aredis, providers, metrics, **kwargs)
        made.append((manager, providers))
        return manager

    yield make
    for manager, providers in made:
        await manager.shutdown()
        close_providers(providers)


@pytest.fixture
async def other_pooler(clock: FakeClock) -> AsyncIterator[MakeOther]:
    """Another pooler: a manager on a Redis server of its own (a staging copy of the configuration, say),
    started on demand. `make(config, providers_on=url)` returns it and a client of its Redis; the dummy
    provider's VMs are kept on `providers_on` (the shared "vCenter"), else on its own Redis."""
    servers: list[RedisServer] = []
    made: list[tuple[Manager, dict[str, Provider], aioredis.Redis, redis.Redis]] = []

    async def make(config: Config, providers_on: str | None = None) -> tuple[Manager, redis.Redis]:
        server = RedisServer().start()
        servers.append(server)
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        providers = build_providers(on_redis(config, providers_on or server.url))
        manager = Manager(on_redis(config, server.url), client, providers, NullMetrics(), clock=clock,
                          stop_grace=5.0)
        sync = redis.Redis.from_url(server.url, decode_responses=True)
        made.append((manager, providers, client, sync))
        return manager, sync

    yield make
    for manager, providers, client, sync in made:
        await manager.shutdown()
        close_providers(providers)
        await client.aclose()
        sync.close()
    for server in servers:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


async def passes(manager: Manager, until: Callable[[], bool], limit: int = 20) -> int:
    """run_once + drain until `until()` holds; fails after `limit` passes. Returns the passes used."""
    for count in range(1, limit + 1):
        await manager.run_once()
        await manager.drain()
        if until():
            return count
    raise AssertionError(f"condition not reached after {limit} passes")


async def passes_for(manager: Manager, until: Callable[[], bool], seconds: float) -> None:
    """run_once + drain, a few a second, until `until()` holds; for waits that back-off delays bound
    (an outage's retries), not a pass count. Fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        await manager.run_once()
        await manager.drain()
        if until():
            return
        assert time.monotonic() < deadline, f"condition not reached within {seconds}s"
        await asyncio.sleep(0.05)


def power_off_by_hand(sync_redis: redis.Redis, folder: str, host: str) -> None:
    """Power a VM of the dummy provider off behind the manager's back, as someone could in vCenter."""
    key = Keys().dummy_folder("dummy", folder)
    record = json.loads(sync_redis.hget(key, host) or "null")
    assert record is not None, f"no dummy VM {host} in {folder}"
    sync_redis.hset(key, host, json.dumps({**record, "on": False}))


def states(sync_redis: redis.Redis, pool: str) -> dict[str, set[str]]:
    keys = Keys()
    return {state: set(sync_redis.smembers(keys.state(state, pool))) for state in STATES}
