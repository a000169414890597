"""Reconciliation after a crash, in-process: whatever state a dead manager left, one pass of the next
one makes Redis and the provider agree. (test_processes.py does the same with real kill -9.)"""

from __future__ import annotations

import json
import time

import redis

from tests.manager.conftest import FakeClock, MakeManager, dummy_config, states
from vmpooler_core import clock as stamps
from vmpooler_core.keys import Keys

K = Keys()
POOL = """
  - name: pool1
    size: 3
    timeout: 10
"""


def provider_vms(sync_redis: redis.Redis) -> set[str]:
    return set(sync_redis.hkeys(K.dummy_folder("dummy", "pool1")))


def known(sync_redis: redis.Redis) -> set[str]:
    return set().union(*states(sync_redis, "pool1").values())


def record_pending(sync_redis: redis.Redis, host: str, owner: str | None, age: float, now: float) -> None:
    """What add_pending.lua leaves when its manager dies before or during the clone."""
    fields = {"clone": stamps.stamp(now - age), "template": "pool1", "pool": "pool1"}
    sync_redis.hset(K.vm(host), mapping={**fields, **({"cloned_by": owner} if owner else {})})
    sync_redis.sadd(K.pending("pool1"), host)


def agree(sync_redis: redis.Redis, in_flight: set[str]) -> None:
    """The crash-safety invariant: every VM in the provider is known to Redis, and every VM in Redis
    (except clones this process has in flight) is in the provider."""
    vms, redis_vms = provider_vms(sync_redis), known(sync_redis)
    assert vms <= redis_vms, f"unknown to Redis: {vms - redis_vms}"
    assert redis_vms - in_flight <= vms, f"missing from the provider: {redis_vms - in_flight - vms}"


async def test_one_pass_after_a_crash_restores_agreement(make_manager: MakeManager, sync_redis: redis.Redis,
                                                         clock: FakeClock) -> None:
    now = clock()
    # The dead run of manager "m1" left: a clone recorded but never started, a finished clone still
    # pending, a ready VM someone deleted by hand, a completed VM whose destroy went through, one whose
    # destroy never ran, and a VM in the folder that was never recorded (a clone of this pooler, with its
    # mark, whose record Redis lost).
    sync_redis.set(K.pooler_id(), "this-pooler")
    record_pending(sync_redis, "lost", "m1", age=5, now=now)
    record_pending(sync_redis, "cloned", "m1", age=5, now=now)
    sync_redis.sadd(K.ready("pool1"), "deleted")
    sync_redis.sadd(K.completed("pool1"), "destroyed", "undestroyed")
    folder = K.dummy_folder("dummy", "pool1")
    for host in ("cloned", "undestroyed", "stranger"):
        sync_redis.hset(folder, host, json.dumps({"on": True, "boots_at": 0, "pooler_id": "this-pooler"}))
    manager = await make_manager(dummy_config(POOL), manager_id="m1")  # the same manager, restarted
    await manager.run_once()
    await manager.drain()
    agree(sync_redis, in_flight=set())
    after = states(sync_redis, "pool1")
    assert "lost" not in known(sync_redis) and "deleted" not in known(sync_redis)
    assert "cloned" in after["ready"] and "stranger" in after["discovered"]
    assert "undestroyed" not in provider_vms(sync_redis) and "destroyed" not in known(sync_redis)
    assert sync_redis.ttl(K.vm("lost")) > 0, "the lost clone's record expires"


async def test_pending_clone_of_a_live_manager_is_left_to_finish(make_manager: MakeManager,
                                                                 sync_redis: redis.Redis,
                                                                 clock: FakeClock) -> None:
    now = clock()
    # "other" is alive (it beat just now) and may still be cloning; "gone" has not beaten for an hour.
    sync_redis.zadd(K.heartbeats(), {"other": time.time(), "gone": time.time() - 3600})
    record_pending(sync_redis, "cloning", "other", age=60, now=now)
    record_pending(sync_redis, "orphan", "gone", age=60, now=now)
    record_pending(sync_redis, "ruby", None, age=60, now=now)  # recorded by the original: no owner
    manager = await make_manager(dummy_config(POOL))
    await manager.run_once()
    pending = states(sync_redis, "pool1")["pending"]
    assert {"cloning", "ruby"} <= pending and "orphan" not in pending
    clock.advance(11 * 60)  # past the pool's timeout: no clone can still be coming
    await manager.run_once()
    assert not {"cloning", "ruby"} & states(sync_redis, "pool1")["pending"]


async def test_clone_in_flight_is_never_reconciled_away(make_manager: MakeManager,
                                                        sync_redis: redis.Redis) -> None:
    # Clones take a while (2 s: far longer than five passes, even on a loaded machine); passes run meanwhile.
    # Their pending entries have no VM yet and must stay.
    manager = await make_manager(dummy_config(POOL, dummy="clone_time: 2\n    boot_time: 0"))
    await manager.run_once()
    for _ in range(5):
        await manager.run_once()
        assert len(states(sync_redis, "pool1")["pending"]) == 3
        assert not states(sync_redis, "pool1")["discovered"]
    await manager.drain()
    await manager.run_once()
    assert len(states(sync_redis, "pool1")["ready"]) == 3
    agree(sync_redis, in_flight=set())
