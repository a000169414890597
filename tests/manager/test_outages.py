"""Outages: Redis or the provider unreachable -> backoff with jitter, one log line when it starts and one
when it ends, Redis left untouched meanwhile, and recovery without help."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import StatsdNames
from tests.manager.conftest import MakeManager, dummy_config, on_redis, states
from tests.redis_server import RedisServer
from vmpooler_core.provider import CloneSpec, ProviderUnavailable, VmFacts
from vmpooler_core.redis_client import connect_blocking
from vmpoolerd.manager import Manager
from vmpoolerd.manager.backoff import Outage
from vmpoolerd.manager.manager import manager_redis
from vmpoolerd.providers import build_providers, close_providers
from vmpoolerd.providers.dummy import DummyProvider


class FlakyDummy(DummyProvider):
    """The dummy provider with a switch that makes it unreachable."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise ProviderUnavailable("dummy: connection refused")

    def list_vms(self, pool: str, folder: str | None) -> dict[str, VmFacts]:
        self._check()
        return super().list_vms(pool, folder)

    def clone(self, pool: str, spec: CloneSpec) -> None:
        self._check()
        super().clone(pool, spec)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def wait_for(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_backoff_grows_with_jitter_up_to_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("thing", max_delay=8.0, rng=lambda: 1.0)
    assert [outage.failed("down") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = Outage("thing", max_delay=8.0, rng=lambda: 0.0)
    assert [jittered.failed("down") for _ in range(3)] == [0.5, 1.0, 2.0]
    assert not outage.ready()
    outage.recovered()
    assert outage.ready() and not outage.down
    assert len(lines(caplog, "thing unavailable")) == 2 and len(lines(caplog, "thing available again")) == 1


async def test_provider_outage_is_backed_off_and_recovers(make_manager: MakeManager, sync_redis: redis.Redis,
                                                          redis_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    config = dummy_config("  - name: a\n    size: 2\n  - name: b\n    size: 2\n")
    client = connect_blocking(on_redis(config, redis_url).redis)
    provider = FlakyDummy(config.providers["dummy"], client, config.pool_index)
    manager = await make_manager(config, providers={"dummy": provider})
    await manager.run_once()
    await manager.drain()
    await manager.run_once()
    before = {pool: states(sync_redis, pool) for pool in "ab"}
    assert all(len(s["ready"]) == 2 for s in before.values())
    provider.down = True
    report = await manager.run_once()
    assert sorted(report.failed) == ["a", "b"]
    for _ in range(5):
        report = await manager.run_once()
        assert report.worked == []
    assert {pool: states(sync_redis, pool) for pool in "ab"} == before, "an outage changes nothing"
    assert len(lines(caplog, "provider dummy unavailable")) == 1
    provider.down = False
    await wait_for(lambda: manager._provider_outages["dummy"].ready())
    report = await manager.run_once()
    assert sorted(report.worked) == ["a", "b"]
    assert len(lines(caplog, "provider dummy available again")) == 1


async def test_pool_error_is_logged_once_and_other_pools_go_on(make_manager: MakeManager,
                                                               sync_redis: redis.Redis,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    config = dummy_config("  - name: good\n    size: 1\n  - name: bad\n    size: 1\n")
    manager = await make_manager(config)
    original = manager.workers["bad"].provider.list_vms

    def broken(pool: str, folder: str | None) -> dict[str, VmFacts]:
        if pool == "bad":
            from vmpooler_core.provider import ProviderError

            raise ProviderError("folder vmpooler/bad not found")
        return original(pool, folder)

    manager.workers["bad"].provider.list_vms = broken  # type: ignore[method-assign]
    for _ in range(4):
        report = await manager.run_once()
        await manager.drain()
        assert "good" in report.worked and "good" not in report.failed
    assert len(states(sync_redis, "good")["ready"]) == 1 and not states(sync_redis, "bad")["pending"]
    assert len(lines(caplog, "pool bad unavailable: ")) == 1


async def test_redis_outage_and_recovery(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmpooler")
    server = RedisServer(appendonly=True, directory=str(tmp_path)).start()
    config = on_redis(dummy_config("  - name: p\n    size: 3\n"), server.url)
    # The daemon's client (its retry policy): the script lanes keep connections from before the outage, and
    # the first use of one after the restart meets its closed socket, which that policy retries at once.
    # Without it, how many lanes were idle across the outage (a matter of timing) decided how many more
    # "outages" were logged after Redis was back.
    client = manager_redis(dataclasses.replace(config, redis=dataclasses.replace(config.redis, socket_timeout=1)))
    check = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=1)
    providers = build_providers(config)
    manager = Manager(config, client, providers, StatsdNames(), stop_grace=2)
    stop = asyncio.Event()
    loop = asyncio.create_task(manager.run_forever(stop))
    try:
        await wait_for(lambda: check.scard("vmpooler__ready__p") == 3)
        server.stop()
        await wait_for(lambda: lines(caplog, "redis unavailable"))
        await asyncio.sleep(2.0)  # several retries, backing off
        assert len(lines(caplog, "redis unavailable")) == 1, "one line per outage, not per retry"
        assert not loop.done()
        server = RedisServer(port=server.port, appendonly=True, directory=str(tmp_path)).start()
        await wait_for(lambda: lines(caplog, "redis available again"))
        check.delete("vmpooler__ready__p")  # and the manager, back at work, refills the pool
        await wait_for(lambda: check.scard("vmpooler__ready__p") == 3)
        assert len(lines(caplog, "redis available again")) == 1
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
        close_providers(providers)
        await client.aclose()
        check.close()
        server.stop()
