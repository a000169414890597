"""Disk, snapshot and revert tasks survive the manager that took them (lua/take_tasks.lua): taken into a
record of that manager's, put back in the queue once it is dead (or when it starts again under the same
id), and done once by whichever manager takes them next. The queues keep the original's keys and
members, "<host>:<argument>" in `vmpooler__tasks__disk` and the like."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from tests.manager.conftest import MakeManager, dummy_config, on_redis, passes, states
from vmpooler_core import vms
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.provider import ProviderError
from vmpooler_core.redis_client import connect_blocking
from vmpoolerd.manager import Manager
from vmpoolerd.providers import DummyProvider

K = Keys()
CONFIG = dummy_config("  - name: pool1\n    size: 1\n")


class StuckDummy(DummyProvider):
    """The dummy provider, whose disks take until the test ends: a manager with it has taken the task
    and not done it when the test kills it. The call then fails (a killed manager never ends it)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.called = threading.Event()
        self.end = threading.Event()

    def add_disk(self, pool: str, name: str, size_gb: int, datastore: str | None) -> None:
        self.called.set()
        self.end.wait(30)
        raise ProviderError("dummy: the manager was killed")


@pytest.fixture
async def stuck(redis_url: str) -> AsyncIterator[StuckDummy]:
    config = on_redis(CONFIG, redis_url)
    provider = StuckDummy(config.providers["dummy"], connect_blocking(config.redis), config.pool_index)
    yield provider
    provider.end.set()


@dataclass
class Stuck:
    filler: Manager  # the manager that filled the pool
    doomed: Manager  # the manager whose disk task is stuck in its provider
    host: str


async def taken_by_a_stuck_manager(make_manager: MakeManager, stuck: StuckDummy, aredis: aioredis.Redis,
                                   sync_redis: redis.Redis, manager_id: str) -> Stuck:
    """A ready VM whose 8 GB disk was requested, the task taken by manager `manager_id` and stuck in its
    provider."""
    filler = await make_manager(CONFIG, manager_id="filler")
    await passes(filler, lambda: len(states(sync_redis, "pool1")["ready"]) == 1)
    host = next(iter(states(sync_redis, "pool1")["ready"]))
    assert await vms.request_disk(Inventory(aredis), host, "8") == "+8gb"
    assert sync_redis.smembers(K.disk_tasks()) == {f"{host}:8"}  # the original's queue and member
    doomed = await make_manager(CONFIG, manager_id=manager_id, providers={"dummy": stuck})
    assert (await doomed.run_once()).tasks == 1
    assert await asyncio.to_thread(stuck.called.wait, 10)
    assert not sync_redis.scard(K.disk_tasks())
    assert sync_redis.hgetall(K.taken_tasks(manager_id)) == {f"disk:{host}:8": "1"}
    return Stuck(filler, doomed, host)


def disks(sync_redis: redis.Redis, host: str) -> tuple[str | None, list[int]]:
    """The VM's `disk` field, and the sizes of the disks the provider gave it."""
    record = json.loads(sync_redis.hget(K.dummy_folder("dummy", "pool1"), host) or "{}")
    field = sync_redis.hget(K.vm(host), "disk")
    return None if field is None else str(field), list(record.get("disks", []))


async def test_a_task_taken_by_a_dead_manager_is_done_once_by_another(
        make_manager: MakeManager, stuck: StuckDummy, aredis: aioredis.Redis, sync_redis: redis.Redis) -> None:
    found = await taken_by_a_stuck_manager(make_manager, stuck, aredis, sync_redis, "doomed")
    # The manager dies: its heartbeat stops, and is stale manager_lease_seconds later (for the other
    # managers, the same as this entry gone).
    sync_redis.zrem(K.heartbeats(), "doomed")
    assert (await found.filler.run_once()).tasks == 1
    await found.filler.drain()
    assert disks(sync_redis, found.host) == ("+8gb", [8])
    assert not sync_redis.exists(K.taken_tasks("doomed"), K.taken_tasks("filler"), K.disk_tasks())
    assert not sync_redis.sismember(K.task_takers(), "doomed")
    assert (await found.filler.run_once()).tasks == 0  # done once, not again
    # Even the dead manager's call ending now (a killed one's never does) changes nothing.
    stuck.end.set()
    await found.doomed.drain()
    assert disks(sync_redis, found.host) == ("+8gb", [8])


async def test_a_manager_started_again_under_its_id_puts_back_what_it_had_taken(
        make_manager: MakeManager, stuck: StuckDummy, aredis: aioredis.Redis, sync_redis: redis.Redis) -> None:
    found = await taken_by_a_stuck_manager(make_manager, stuck, aredis, sync_redis, "stable")
    # Started again at once under the same id: its heartbeat is fresh, yet what the old process had
    # taken died with it.
    again = await make_manager(CONFIG, manager_id="stable")
    assert (await again.run_once()).tasks == 1
    await again.drain()
    assert disks(sync_redis, found.host) == ("+8gb", [8])
    assert not sync_redis.exists(K.taken_tasks("stable"), K.disk_tasks())


async def test_a_live_manager_keeps_its_tasks_and_puts_back_those_of_a_busy_vm(
        make_manager: MakeManager, stuck: StuckDummy, aredis: aioredis.Redis, sync_redis: redis.Redis) -> None:
    found = await taken_by_a_stuck_manager(make_manager, stuck, aredis, sync_redis, "slow")
    assert (await found.filler.run_once()).tasks == 0  # "slow" is alive: its task is left to it
    snapshot = await vms.request_snapshot(Inventory(aredis), found.host)
    # The VM's disk is still being added: its snapshot waits in the queue, not in the manager's record.
    assert (await found.doomed.run_once()).tasks == 0
    assert sync_redis.smembers(K.snapshot_tasks()) == {f"{found.host}:{snapshot}"}
    assert sync_redis.hgetall(K.taken_tasks("slow")) == {f"disk:{found.host}:8": "1"}
    stuck.end.set()  # the disk fails; the task is over, and the snapshot can be taken
    await found.doomed.drain()
    assert not sync_redis.exists(K.taken_tasks("slow"))
    assert (await found.doomed.run_once()).tasks == 1
    await found.doomed.drain()
    assert sync_redis.hget(K.vm(found.host), f"snapshot:{snapshot}")
    assert not sync_redis.exists(K.taken_tasks("slow"), K.snapshot_tasks())
