"""Issue 14: a pool's size, template and clone target changed at run time through API v3's pool
configuration API are taken up by the running manager at its next pass, and kept by a restarted one; a
new template, clone target or a reset replaces the pool's ready and pending VMs, once."""

from __future__ import annotations

import json

import redis
from redis import asyncio as aioredis

from tests.manager.conftest import MakeManager, dummy_config, passes, states
from vmpooler_core import pool_records
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.pool_settings import PoolSettings
from vmpoolerd.manager import Manager

K = Keys()
POOLS = """
  - name: pool1
    size: 2
    template: templates/a
"""


def made_from(sync_redis: redis.Redis) -> dict[str, str]:
    """The template and clone target of each VM of pool1's folder, as the dummy provider recorded them."""
    records = sync_redis.hgetall(K.dummy_folder("dummy", "pool1"))
    return {host: f"{json.loads(raw)['template']}@{json.loads(raw)['host']}" for host, raw in records.items()}


def ready_ones(sync_redis: redis.Redis) -> set[str]:
    return states(sync_redis, "pool1")["ready"]


async def filled(make_manager: MakeManager, aredis: aioredis.Redis,
                 sync_redis: redis.Redis) -> tuple[Manager, PoolSettings]:
    """A manager that has filled pool1, and the pool configuration API's side, on the same Redis."""
    cfg = dummy_config(POOLS)
    manager = await make_manager(cfg)
    await passes(manager, lambda: len(ready_ones(sync_redis)) == 2)
    return manager, PoolSettings(cfg, Inventory(aredis))


async def replaced(manager: Manager, sync_redis: redis.Redis, old: set[str]) -> set[str]:
    """Passes until pool1 is full again of VMs that are not `old` ones, and `old` ones are destroyed."""
    await passes(manager, lambda: len(ready_ones(sync_redis)) == 2 and not old & set(made_from(sync_redis)))
    return ready_ones(sync_redis)


async def test_size_changes_are_taken_up_and_kept_across_a_restart(make_manager: MakeManager, aredis: aioredis.Redis,
                                                                   sync_redis: redis.Redis) -> None:
    manager, api = await filled(make_manager, aredis, sync_redis)
    assert await api.set_sizes({"pool1": "4"})
    await passes(manager, lambda: len(ready_ones(sync_redis)) == 4)
    await manager.shutdown()
    # A restarted manager keeps the size set through the API...
    restarted = await make_manager(dummy_config(POOLS))
    report = await restarted.run_once()
    assert report.clones == 0 and restarted.workers["pool1"].pool.size == 4
    # ...until it is deleted: back to the file's 2, the surplus destroyed.
    changed, _ = await api.reset_size("pool1")
    assert changed
    await passes(restarted, lambda: len(ready_ones(sync_redis)) == 2)
    assert not sync_redis.smembers(K.undo_override("size"))  # the request was taken up


async def test_a_new_template_replaces_the_pools_vms_once(make_manager: MakeManager, aredis: aioredis.Redis,
                                                          sync_redis: redis.Redis) -> None:
    manager, api = await filled(make_manager, aredis, sync_redis)
    old = ready_ones(sync_redis)
    assert sync_redis.hget(K.prepared("template"), "pool1") == "templates/a"
    assert await api.set_templates({"pool1": "templates/b"})
    # The old template's VMs are destroyed; the new ones are cloned from templates/b.
    await replaced(manager, sync_redis, old)
    assert set(made_from(sync_redis).values()) == {"templates/b@dummy-host"}
    assert sync_redis.hget(K.prepared("template"), "pool1") == "templates/b"
    # Neither a restart nor the next passes replace them again.
    now = ready_ones(sync_redis)
    await manager.shutdown()
    restarted = await make_manager(dummy_config(POOLS))
    await passes(restarted, lambda: True, limit=2)
    assert ready_ones(sync_redis) == now
    # The file's template again, once the API's is deleted: replaced once more.
    await api.reset_template("pool1")
    await replaced(restarted, sync_redis, now)
    assert set(made_from(sync_redis).values()) == {"templates/a@dummy-host"}
    assert not sync_redis.smembers(K.undo_override("template"))


async def test_a_template_changed_in_the_file_alone_keeps_the_vms_made(make_manager: MakeManager,
                                                                       sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(POOLS))
    await passes(manager, lambda: len(ready_ones(sync_redis)) == 2)
    made = ready_ones(sync_redis)
    await manager.shutdown()
    edited = await make_manager(dummy_config(POOLS.replace("templates/a", "templates/c")))
    await passes(edited, lambda: True, limit=2)
    assert ready_ones(sync_redis) == made  # as before issue 14: the file's change applies to new clones
    assert sync_redis.hget(K.prepared("template"), "pool1") == "templates/c"


async def test_clone_target_and_reset(make_manager: MakeManager, aredis: aioredis.Redis,
                                      sync_redis: redis.Redis) -> None:
    manager, api = await filled(make_manager, aredis, sync_redis)
    first = ready_ones(sync_redis)
    assert await api.set_clone_targets({"pool1": "cluster2"})
    await replaced(manager, sync_redis, first)
    assert set(made_from(sync_redis).values()) == {"templates/a@cluster2"}
    second = ready_ones(sync_redis)
    await api.reset_pools({"pool1": "1"})
    await replaced(manager, sync_redis, second)
    assert not sync_redis.smembers(K.pool_reset())


async def test_the_pools_are_published_for_the_originals_api_processes(make_manager: MakeManager,
                                                                       sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(POOLS + "    alias: [a1, a2]\n"))
    await manager.run_once()
    assert sync_redis.hgetall(K.pool_record("pool1")) == {
        "name": "pool1", "size": "2", "template": "templates/a", "alias": "a1,a2", "provider": "dummy"}
    # What an API process without pools serves (vmpooler_core/pool_records.py): the same pool.
    [pool] = await pool_records.read(manager.inventory.redis)
    assert pool == manager.workers["pool1"].base
