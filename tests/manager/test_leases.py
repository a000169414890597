"""Several managers on one Redis: one manager per pool at a time, take-over, and never over-filling."""

from __future__ import annotations

import asyncio
import time

import redis

from tests.manager.conftest import MakeManager, dummy_config, states
from vmpooler_core.keys import Keys
from vmpooler_core.replies import Reservation

K = Keys()
POOLS = "".join(f"  - name: p{i}\n    size: 3\n" for i in range(4))


async def test_each_pool_is_worked_by_one_manager(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, dummy="clone_time: 0.05\n    boot_time: 0")
    first, second = await make_manager(config), await make_manager(config)
    one, two = await asyncio.gather(first.run_once(), second.run_once())
    assert sorted(one.worked + two.worked) == ["p0", "p1", "p2", "p3"]
    assert not set(one.worked) & set(two.worked)
    assert sorted(one.elsewhere) == sorted(two.worked)
    for pool in one.worked:
        assert sync_redis.get(K.lease(pool)) == first.id
        assert 0 < sync_redis.pttl(K.lease(pool)) <= 5000


async def test_two_managers_never_overfill(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, dummy="clone_time: 0.02\n    boot_time: 0")
    managers = [await make_manager(config) for _ in range(2)]
    peak = 0
    for _ in range(8):
        await asyncio.gather(*(m.run_once() for m in managers))
        for pool in ("p0", "p1", "p2", "p3"):
            now = states(sync_redis, pool)
            peak = max(peak, len(now["ready"]) + len(now["pending"]))
        await asyncio.sleep(0.03)
    await asyncio.gather(*(m.drain() for m in managers))
    assert peak <= 3
    for pool in ("p0", "p1", "p2", "p3"):
        assert sync_redis.hlen(K.dummy_folder("dummy", pool)) == 3


async def test_reservation_refuses_without_the_lease_or_over_size(make_manager: MakeManager,
                                                                  sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config("  - name: p\n    size: 1\n"))
    inventory = manager.inventory
    assert await inventory.reserve_clone("p", "h1", "t", size=1, owner="me") is Reservation.LEASE_LOST
    sync_redis.set(K.lease("p"), "me")
    assert await inventory.reserve_clone("p", "h1", "t", size=1, owner="me") is Reservation.RESERVED
    assert await inventory.reserve_clone("p", "h2", "t", size=1, owner="me") is Reservation.FULL
    assert await inventory.reserve_clone("p", "h1", "t", size=2, owner="me") is Reservation.TAKEN
    assert sync_redis.smembers(K.pending("p")) == {"h1"}
    assert sync_redis.hget(K.vm("h1"), "cloned_by") == "me"


async def test_clean_stop_hands_pools_over_at_once(make_manager: MakeManager,
                                                   sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS)
    first, second = await make_manager(config), await make_manager(config)
    assert len((await first.run_once()).worked) == 4
    assert (await second.run_once()).worked == []
    await first.shutdown()
    assert not any(sync_redis.exists(K.lease(f"p{i}")) for i in range(4))
    assert first.id not in sync_redis.zrange(K.heartbeats(), 0, -1)
    assert len((await second.run_once()).worked) == 4


async def test_dead_managers_pools_are_taken_within_the_lease(make_manager: MakeManager,
                                                              sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, manager_lease_seconds=2)
    first, second = await make_manager(config), await make_manager(config)
    assert len((await first.run_once()).worked) == 4
    died = time.monotonic()  # `first` never runs again: as if killed
    while not (await second.run_once()).worked:
        # The 2 s lease, then one pass on a loaded machine (each pass here waits 0.1 s): 2 s of room.
        assert time.monotonic() - died < 2 + 2, "not taken over within the lease"
        await asyncio.sleep(0.1)
    assert len((await second.run_once()).worked) == 4
    assert first.ctx.leases.pools == set(), "and the dead one no longer counts them as its own"
