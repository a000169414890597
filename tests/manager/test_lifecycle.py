"""A VM's life under the manager, with the dummy provider: checkout and refill, lifetime, destroy,
ready re-checks, pending timeout, failed clones, discovered and vanished VMs, disk and snapshot tasks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import cast

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import StatsdNames
from tests.manager.conftest import (
    FakeClock,
    MakeManager,
    dummy_config,
    on_redis,
    passes,
    power_off_by_hand,
    states,
)
from vmpooler_core import vms
from vmpooler_core.checkout import Checkout
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import CloneSpec, ProviderError
from vmpooler_core.request import from_path
from vmpoolerd import confirm
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers

K = Keys()
ONE_POOL = """
  - name: pool1
    size: 2
"""


def provider_vms(sync_redis: redis.Redis, folder: str = "pool1") -> dict[str, dict[str, object]]:
    return {k: json.loads(v) for k, v in sync_redis.hgetall(K.dummy_folder("dummy", folder)).items()}


def retired(sync_redis: redis.Redis, host: str, pool: str = "pool1") -> bool:
    """Moved to completed by the last pass, or already destroyed too: the pass starts the destroy, and
    whether it has ended when the pass returns depends on how the event loop ran its tasks."""
    if host in states(sync_redis, pool)["completed"]:
        return True
    return bool(sync_redis.hget(K.vm(host), "destroy")) and not any(host in hosts for hosts in
                                                                      states(sync_redis, pool).values())


async def filled(manager: Manager, sync_redis: redis.Redis, pool: str = "pool1", size: int = 2) -> set[str]:
    await passes(manager, lambda: len(states(sync_redis, pool)["ready"]) == size)
    return states(sync_redis, pool)["ready"]


async def test_refill_after_checkout(make_manager: MakeManager, sync_redis: redis.Redis,
                                     aredis: aioredis.Redis) -> None:
    config = dummy_config(ONE_POOL)
    manager = await make_manager(config)
    first = await filled(manager, sync_redis)
    allocation = await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1+pool1"))
    assert set(allocation.hosts()) == first
    used = await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2)
    assert used <= 2
    now = states(sync_redis, "pool1")
    assert now["running"] == first and not now["ready"] & first and not now["pending"]
    assert len(provider_vms(sync_redis)) == 4


async def test_lifetime_expiry_then_destroy(make_manager: MakeManager, sync_redis: redis.Redis,
                                            aredis: aioredis.Redis, clock: FakeClock,
                                            metrics: StatsdNames) -> None:
    config = dummy_config(ONE_POOL, vm_lifetime=2)
    manager = await make_manager(config)
    await filled(manager, sync_redis)
    host = (await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]
    # Checkout stamps real time; the manager's clock is moved past it.
    clock.now = time.time() + 3600
    await manager.run_once()
    assert host in states(sync_redis, "pool1")["running"], "1 hour of 2: still running"
    await manager.inventory.set_fields(host, {"lifetime": 5})
    clock.advance(3 * 3600)
    await manager.run_once()
    assert host in states(sync_redis, "pool1")["running"], "its own lifetime of 5 hours wins"
    clock.advance(2 * 3600)
    await manager.run_once()
    assert retired(sync_redis, host)
    assert not sync_redis.hexists(K.active("pool1"), host)
    await manager.drain()
    await manager.run_once()
    await manager.drain()
    assert host not in provider_vms(sync_redis)
    assert not any(host in members for members in states(sync_redis, "pool1").values())
    assert sync_redis.hget(K.vm(host), "destroy")
    assert 0 < sync_redis.ttl(K.vm(host)) <= 168 * 3600
    assert metrics.last("timing", "destroy.pool1") is not None
    doc = await vms.describe(config, Inventory(aredis), host, resolve=False)
    assert doc["state"] == "destroyed"


async def test_returned_vm_is_destroyed(make_manager: MakeManager, sync_redis: redis.Redis,
                                        aredis: aioredis.Redis) -> None:
    config = dummy_config(ONE_POOL)
    manager = await make_manager(config)
    await filled(manager, sync_redis)
    checkout = Checkout(config, Inventory(aredis), NullMetrics())
    host = (await checkout.take(from_path("pool1"))).hosts()[0]
    await checkout.give_back(host)
    await passes(manager, lambda: host not in provider_vms(sync_redis))
    assert not states(sync_redis, "pool1")["completed"]


async def test_completed_vm_stays_until_its_destroy_succeeds(make_manager: MakeManager,
                                                             sync_redis: redis.Redis,
                                                             aredis: aioredis.Redis) -> None:
    config = dummy_config(ONE_POOL, dummy="clone_time: 0\n    boot_time: 0\n    destroy_fail_percent: 100")
    manager = await make_manager(config)
    host = sorted(await filled(manager, sync_redis))[0]
    await manager.inventory.move("pool1", host, "ready", "completed")
    for _ in range(3):
        await manager.run_once()
        await manager.drain()
        assert host in states(sync_redis, "pool1")["completed"] and host in provider_vms(sync_redis)
    manager.ctx.providers["dummy"].destroy_fail_percent = 0  # type: ignore[attr-defined]
    await passes(manager, lambda: host not in provider_vms(sync_redis))
    assert host not in states(sync_redis, "pool1")["completed"]
    assert not states(sync_redis, "pool1")["discovered"], "never re-discovered (A7.7)"


async def test_powered_off_ready_vm_is_replaced(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(ONE_POOL))
    host = sorted(await filled(manager, sync_redis))[0]
    power_off_by_hand(sync_redis, "pool1", host)
    await manager.run_once()
    assert retired(sync_redis, host)
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2
                 and host not in provider_vms(sync_redis))


async def test_ready_vm_checked_only_every_vm_checktime(make_manager: MakeManager, sync_redis: redis.Redis,
                                                        clock: FakeClock) -> None:
    manager = await make_manager(dummy_config(ONE_POOL, vm_checktime=10))
    host = sorted(await filled(manager, sync_redis))[0]
    assert sync_redis.hget(K.vm(host), "check"), "checked when it became ready"
    power_off_by_hand(sync_redis, "pool1", host)
    await manager.run_once()
    assert host in states(sync_redis, "pool1")["ready"], "checked less than 10 minutes ago"
    clock.advance(11 * 60)
    await manager.run_once()
    assert retired(sync_redis, host)


@pytest.mark.parametrize("where", ["pool", "global"])
async def test_ready_ttl_expires_ready_vms(make_manager: MakeManager, sync_redis: redis.Redis,
                                           clock: FakeClock, where: str) -> None:
    pools = ONE_POOL + ("    ready_ttl: 30\n" if where == "pool" else "")
    app = {"ready_ttl": 30} if where == "global" else {}
    manager = await make_manager(dummy_config(pools, **app))
    first = await filled(manager, sync_redis)
    clock.advance(29 * 60)
    await manager.run_once()
    assert states(sync_redis, "pool1")["ready"] == first
    clock.advance(2 * 60)
    await manager.run_once()
    await manager.drain()
    assert not first & states(sync_redis, "pool1")["ready"]
    assert all(sync_redis.hget(K.vm(host), "destroy") for host in first), "completed and destroyed"


async def test_ready_ttl_zero_means_forever(make_manager: MakeManager, sync_redis: redis.Redis,
                                            clock: FakeClock) -> None:
    manager = await make_manager(dummy_config(ONE_POOL + "    ready_ttl: 0\n"))
    first = await filled(manager, sync_redis)
    clock.advance(365 * 86400)
    await manager.run_once()
    assert states(sync_redis, "pool1")["ready"] == first


async def test_pending_timeout(make_manager: MakeManager, sync_redis: redis.Redis, clock: FakeClock) -> None:
    config = dummy_config(ONE_POOL + "    timeout: 10\n",
                          dummy="clone_time: 0\n    boot_time: 0\n    ready_fail_percent: 100")
    manager = await make_manager(config)
    await manager.run_once()
    await manager.drain()
    stuck = states(sync_redis, "pool1")["pending"]
    assert len(stuck) == 2
    clock.advance(9 * 60)
    await manager.run_once()
    assert states(sync_redis, "pool1")["pending"] == stuck, "not yet 10 minutes"
    clock.advance(2 * 60)
    await manager.run_once()
    assert all(retired(sync_redis, host) for host in stuck)
    await manager.drain()
    await manager.run_once()
    await manager.drain()
    assert not stuck & provider_vms(sync_redis).keys(), "timed-out VMs destroyed"
    assert len(states(sync_redis, "pool1")["pending"]) == 2, "and replaced"


async def test_failed_clone_leaves_nothing_behind(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    config = dummy_config(ONE_POOL, dummy="clone_time: 0\n    boot_time: 0\n    clone_fail_percent: 100")
    manager = await make_manager(config)
    await manager.run_once()
    await manager.drain()
    assert not any(states(sync_redis, "pool1").values())
    assert not provider_vms(sync_redis)
    failed = [key for key in sync_redis.scan_iter(K.vm("*"))]
    assert len(failed) == 2
    assert all(0 < sync_redis.ttl(key) <= 168 * 3600 for key in failed), "hash expires (A7.8)"
    assert sync_redis.get(K.clone_tasks()) == "0"
    manager.ctx.providers["dummy"].clone_fail_percent = 0  # type: ignore[attr-defined]
    await filled(manager, sync_redis)


async def test_discovered_vm_is_completed_a_pass_later_then_destroyed(make_manager: MakeManager,
                                                                      sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(ONE_POOL))
    await filled(manager, sync_redis)
    # A clone of this pooler (it carries our mark) whose record Redis lost.
    ours = sync_redis.get(K.pooler_id())
    sync_redis.hset(K.dummy_folder("dummy", "pool1"), "stranger", json.dumps({"on": True, "pooler_id": ours}))
    await manager.run_once()
    assert states(sync_redis, "pool1")["discovered"] == {"stranger"}
    await manager.run_once()
    assert states(sync_redis, "pool1")["completed"] == {"stranger"}
    await manager.drain()
    await manager.run_once()
    await manager.drain()
    assert "stranger" not in provider_vms(sync_redis)
    assert not states(sync_redis, "pool1")["discovered"] and not states(sync_redis, "pool1")["completed"]
    assert len(states(sync_redis, "pool1")["ready"]) == 2


async def test_vm_of_another_pool_in_a_shared_folder_is_left_alone(make_manager: MakeManager,
                                                                   sync_redis: redis.Redis) -> None:
    pools = """
  - name: a
    size: 2
    folder: shared
  - name: b
    size: 2
    folder: shared
"""
    manager = await make_manager(dummy_config(pools))
    await passes(manager, lambda: all(len(states(sync_redis, p)["ready"]) == 2 for p in "ab"))
    for _ in range(3):
        await manager.run_once()
        await manager.drain()
    assert all(len(states(sync_redis, p)["ready"]) == 2 and not states(sync_redis, p)["discovered"]
               for p in "ab")
    assert len(provider_vms(sync_redis, "shared")) == 4


async def test_vanished_vms_are_forgotten(make_manager: MakeManager, sync_redis: redis.Redis,
                                          aredis: aioredis.Redis) -> None:
    config = dummy_config(ONE_POOL)
    manager = await make_manager(config)
    ready = await filled(manager, sync_redis)
    running = (await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]
    sync_redis.delete(K.dummy_folder("dummy", "pool1"))  # someone deleted the VMs in vCenter
    # All of them at once: the manager holds them (reconcile.py) until an operator confirms they are gone.
    await confirm.confirm(manager.inventory, "pool1")
    await manager.run_once()
    after = states(sync_redis, "pool1")
    assert not (ready & (after["ready"] | after["running"]))
    assert sync_redis.hget(K.vm(running), "destroy") and not sync_redis.hexists(K.active("pool1"), running)


async def test_disk_snapshot_and_revert_tasks(make_manager: MakeManager, sync_redis: redis.Redis,
                                              aredis: aioredis.Redis) -> None:
    config = dummy_config(ONE_POOL)
    manager = await make_manager(config)
    host = sorted(await filled(manager, sync_redis))[0]
    inventory = Inventory(aredis)
    assert await vms.request_disk(inventory, host, "8") == "+8gb"
    await vms.request_disk(inventory, host, "16")
    snapshot = await vms.request_snapshot(inventory, host)
    report = await manager.run_once()
    assert report.tasks == 3
    await manager.drain()
    vm = sync_redis.hgetall(K.vm(host))
    assert vm["disk"] in ("+8gb:+16gb", "+16gb:+8gb")
    assert vm[f"snapshot:{snapshot}"]
    assert sorted(cast(list[int], provider_vms(sync_redis)[host]["disks"])) == [8, 16]
    await vms.request_revert(inventory, host, vm, snapshot)
    assert (await manager.run_once()).tasks == 1
    await manager.drain()
    assert not sync_redis.scard(K.revert_tasks())
    doc = await vms.describe(config, inventory, host, resolve=False)
    assert doc["snapshots"] == [snapshot]


async def test_a_clone_that_fails_after_its_vm_was_checked_out_leaves_the_vm_with_its_client(
        make_manager: MakeManager, sync_redis: redis.Redis, aredis: aioredis.Redis, redis_url: str) -> None:
    """The provider makes the VM, then fails the call (as vSphere does when vCenter stops answering
    while the clone task ends). Meanwhile a pass found the VM ready and a client checked it out: the
    failure must not take it away (the soak run caught this: a held VM answered 404 on return)."""
    config = dummy_config("  - name: pool1\n    size: 1\n", dummy="clone_time: 0\n    boot_time: 0")
    providers = build_providers(on_redis(config, redis_url))
    dummy = providers["dummy"]
    made, fail = threading.Event(), threading.Event()
    clone = dummy.clone

    def clone_then_fail(pool: str, spec: CloneSpec) -> None:
        clone(pool, spec)
        made.set()
        fail.wait(10)
        raise ProviderError("vsphere: the handshake operation timed out")

    dummy.clone = clone_then_fail  # type: ignore[method-assign]
    manager = await make_manager(config, providers=providers)
    await manager.run_once()
    assert await asyncio.to_thread(made.wait, 10)
    for _ in range(50):  # bounded: passes until one finds the VM ready
        await manager.run_once()
        if states(sync_redis, "pool1")["ready"]:
            break
        await asyncio.sleep(0.02)
    host = (await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]
    fail.set()
    await manager.drain()
    await manager.run_once()
    await manager.drain()
    assert host in states(sync_redis, "pool1")["running"], "still checked out"
    assert host in provider_vms(sync_redis), "and never destroyed"
    dummy.clone = clone  # type: ignore[method-assign]


async def test_a_clone_that_fails_while_pending_is_forgotten(make_manager: MakeManager, sync_redis: redis.Redis,
                                                             redis_url: str) -> None:
    config = dummy_config("  - name: pool1\n    size: 1\n", dummy="clone_time: 0\n    boot_time: 3600")
    providers = build_providers(on_redis(config, redis_url))
    dummy = providers["dummy"]
    clone = dummy.clone

    def clone_then_fail(pool: str, spec: CloneSpec) -> None:
        clone(pool, spec)
        raise ProviderError("vsphere: the handshake operation timed out")

    dummy.clone = clone_then_fail  # type: ignore[method-assign]
    manager = await make_manager(config, providers=providers)
    await manager.run_once()
    await manager.drain()
    assert not states(sync_redis, "pool1")["pending"], "out of pending at once"
    dummy.clone = clone  # type: ignore[method-assign]
