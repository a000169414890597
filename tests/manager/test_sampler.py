"""The manager's sampler: one sample a minute of each pool, written by the manager that holds the pool."""

from __future__ import annotations

import asyncio
import time

import redis

from tests.manager.conftest import MakeManager, dummy_config
from vmpooler_core.keys import Keys
from vmpooler_core.pool_history import Sample
from vmpoolerd.manager.sampler import Sampler

K = Keys()
POOLS = "".join(f"  - name: p{i}\n    size: {i + 1}\n" for i in range(4))
MINUTE = 29_000_000


def samples(r: redis.Redis, pool: str) -> list[Sample | None]:
    return [Sample.parse(entry) for entry in r.lrange(K.samples(pool), 0, -1)]  # type: ignore[union-attr]


async def test_each_pool_is_sampled_by_the_manager_holding_it(make_manager: MakeManager,
                                                              sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS)
    first, second = await make_manager(config), await make_manager(config)
    one, two = await asyncio.gather(first.run_once(), second.run_once())
    assert sorted(one.worked + two.worked) == ["p0", "p1", "p2", "p3"]
    await asyncio.gather(first.drain(), second.drain())  # no clone still moving VMs between sets
    sync_redis.sadd(K.running("p3"), "r1", "r2")
    await second.sampler.once(MINUTE)
    assert [pool for pool in ("p0", "p1", "p2", "p3") if sync_redis.llen(K.samples(pool))] == sorted(two.worked)
    wait = await first.sampler.once(MINUTE)
    assert 0 < wait <= 60.5  # to the next minute on Redis's clock
    for pool in ("p0", "p1", "p2", "p3"):
        taken = samples(sync_redis, pool)
        assert len(taken) == 1 and taken[0] is not None and taken[0].minute == MINUTE, (pool, taken)
        counts = (sync_redis.scard(K.ready(pool)), sync_redis.scard(K.pending(pool)), sync_redis.scard(K.running(pool)))
        assert (taken[0].ready, taken[0].pending, taken[0].running) == counts
        assert taken[0].size == int(pool[1]) + 1 and taken[0].target is None
    # Sampled again in the same minute (a pool's lease moved, say): nothing written twice.
    await first.sampler.once(MINUTE)
    assert all(len(samples(sync_redis, pool)) == 1 for pool in one.worked)


async def test_the_sampler_samples_as_soon_as_it_holds_pools_with_their_targets(make_manager: MakeManager,
                                                                                sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(POOLS))
    sampler = Sampler(manager.ctx, manager.workers, targets=lambda: {"p2": 2})
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    try:
        await manager.run_once()  # takes the leases
        deadline = time.monotonic() + 10
        while not all(sync_redis.llen(K.samples(f"p{i}")) for i in range(4)):
            assert time.monotonic() < deadline, "not every pool sampled within 10 s"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    minute = int(time.time() // 60)
    for i in range(4):
        taken = samples(sync_redis, f"p{i}")
        assert taken[0] is not None and abs(taken[0].minute - minute) <= 1  # on Redis's clock: this minute
        assert taken[0].target == (2 if i == 2 else None)
