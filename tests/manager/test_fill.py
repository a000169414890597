"""Filling pools: size reached and never passed, the clone limit, the records a clone leaves."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import redis

from tests.conftest import StatsdNames
from tests.manager.conftest import MakeManager, dummy_config, on_redis, passes, states
from vmpooler_core import clock as stamps
from vmpooler_core.keys import Keys
from vmpooler_core.provider import CloneSpec
from vmpooler_core.redis_client import connect_blocking
from vmpoolerd.providers import DummyProvider

K = Keys()
POOLS = """
  - name: pool1
    alias: [one]
    size: 3
    template: templates/pool1
  - name: pool2
    size: 2
"""


async def test_fill_to_size_and_record(make_manager: MakeManager, sync_redis: redis.Redis,
                                       metrics: StatsdNames) -> None:
    config = dummy_config(POOLS, prefix="t-")
    manager = await make_manager(config)
    report = await manager.run_once()
    assert sorted(report.worked) == ["pool1", "pool2"] and report.clones == 5
    await manager.drain()
    pool1 = states(sync_redis, "pool1")
    assert len(pool1["pending"]) == 3 and not pool1["ready"]
    await manager.run_once()
    assert len(states(sync_redis, "pool1")["ready"]) == 3
    assert len(states(sync_redis, "pool2")["ready"]) == 2
    host = sorted(states(sync_redis, "pool1")["ready"])[0]
    assert re.fullmatch(r"t-[a-y][a-z0-9]{14}", host)
    vm = sync_redis.hgetall(K.vm(host))
    assert vm["pool"] == vm["template"] == "pool1" and vm["clone_template"] == "templates/pool1"
    assert vm["cloned_by"] == manager.id and stamps.parse(vm["clone"]) and stamps.parse(vm["ready"])
    assert float(vm["clone_time"]) >= 0
    day = stamps.today(manager.ctx.clock())
    assert f"pool1:{host}" in sync_redis.hgetall(K.clone_stats(day))
    assert f"pool1:{host}" in sync_redis.hgetall(K.boot_stats(day))
    assert sync_redis.get(K.clone_tasks()) == "0"
    assert sync_redis.smembers(K.pools()) == {"pool1", "pool2"}
    assert metrics.last("timing", "clone.pool1") is not None
    # The next pass's gauges report the full pool; nothing more is cloned.
    report = await manager.run_once()
    assert report.clones == 0
    assert metrics.last("gauge", "ready.pool1") == 3 and metrics.last("gauge", "running.pool1") == 0


async def test_empty_marker_is_set_and_cleared(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(POOLS))
    await manager.run_once()
    assert sync_redis.get(K.empty("pool1")) == "true"
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 3)
    assert not sync_redis.exists(K.empty("pool1"))


class CountingDummy(DummyProvider):
    """The dummy provider, counting how many clones run at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def clone(self, pool: str, spec: CloneSpec) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            super().clone(pool, spec)
        finally:
            with self.lock:
                self.running -= 1


async def test_clones_never_exceed_task_limit(make_manager: MakeManager, sync_redis: redis.Redis,
                                              redis_url: str) -> None:
    config = dummy_config("""
  - name: a
    size: 6
  - name: b
    size: 6
""", dummy="clone_time: 0.15\n    boot_time: 0", task_limit=3)
    client = connect_blocking(on_redis(config, redis_url).redis)
    provider = CountingDummy(config.providers["dummy"], client, config.pool_index)
    manager = await make_manager(config, providers={"dummy": provider})
    await manager.run_once()
    deadline = time.monotonic() + 5
    while len(manager.cloner.inflight) < 3:
        assert time.monotonic() < deadline, "three clones never started"
        await asyncio.sleep(0.005)
    # Fairness: the first slots go to both pools, not all to the first one.
    assert set(manager.cloner.inflight.values()) == {"a", "b"}
    await manager.drain()
    assert provider.peak == 3
    assert len(states(sync_redis, "a")["pending"]) == 6 and len(states(sync_redis, "b")["pending"]) == 6


async def test_clone_counter_follows_clones_in_flight(make_manager: MakeManager,
                                                      sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(POOLS, dummy="clone_time: 0.3\n    boot_time: 0"))
    await manager.run_once()
    deadline = time.monotonic() + 5
    while sync_redis.get(K.clone_tasks()) != "4" and time.monotonic() < deadline:  # task_limit 4
        await asyncio.sleep(0.01)
    assert sync_redis.get(K.clone_tasks()) == "4"
    await manager.drain()
    assert sync_redis.get(K.clone_tasks()) == "0"


async def test_dead_managers_clones_leave_the_counter(make_manager: MakeManager,
                                                      sync_redis: redis.Redis) -> None:
    # A manager killed mid-clone left 7 in flight; its heartbeat is old. The counter forgets it.
    sync_redis.zadd(K.heartbeats(), {"dead": time.time() - 3600})
    sync_redis.hset(K.clone_counts(), "dead", 7)
    sync_redis.set(K.clone_tasks(), 7)
    manager = await make_manager(dummy_config("  - name: p\n    size: 0\n"))
    await manager.run_once()
    assert sync_redis.get(K.clone_tasks()) == "0"
    assert sync_redis.zrange(K.heartbeats(), 0, -1) == [manager.id]


async def test_pool_made_smaller_gives_back_surplus(make_manager: MakeManager,
                                                    sync_redis: redis.Redis) -> None:
    big = await make_manager(dummy_config("  - name: p\n    size: 4\n"))
    await passes(big, lambda: len(states(sync_redis, "p")["ready"]) == 4)
    await big.shutdown()
    small = await make_manager(dummy_config("  - name: p\n    size: 1\n"))
    await passes(small, lambda: len(states(sync_redis, "p")["ready"]) == 1
                 and not states(sync_redis, "p")["completed"])
    assert sync_redis.hlen(K.dummy_folder("dummy", "p")) == 1
