"""Ownership marks (vmpoolerd/manager/ownership.py), with the dummy provider: an unknown VM in a pool
folder is destroyed only when it carries this pooler's mark (or none, with `purge_unconfigured`); any
other is left alone and reported once. test_vcsim.py does the same against the vCenter simulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import make_config
from tests.manager.conftest import MakeManager, MakeOther, dummy_config, states
from vmpooler_core.checkout import Checkout
from vmpooler_core.errors import ConfigError
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import CloneSpec
from vmpooler_core.request import from_path
from vmpoolerd.manager import Manager
from vmpoolerd.providers.dummy import DummyVm
from vmpoolerd.providers.vsphere import VsphereProvider, pooler_mark

K = Keys()
POOL = """
  - name: pool1
    size: 2
"""


def in_folder(sync_redis: redis.Redis) -> dict[str, dict[str, object]]:
    """The dummy provider's VMs of pool1's folder (its "vCenter"), by name."""
    return {k: json.loads(v) for k, v in sync_redis.hgetall(K.dummy_folder("dummy", "pool1")).items()}


def put_vm(sync_redis: redis.Redis, host: str, mark: str | None) -> None:
    """A VM in pool1's folder that Redis does not know, carrying `mark` (None: no mark)."""
    record = {"on": True, **({"pooler_id": mark} if mark else {})}
    sync_redis.hset(K.dummy_folder("dummy", "pool1"), host, json.dumps(record))


def recorded(sync_redis: redis.Redis) -> set[str]:
    return set().union(*states(sync_redis, "pool1").values())


def left_alone(caplog: pytest.LogCaptureFixture, host: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith(f"left alone pool=pool1 vm={host}:")]


async def run(*managers: Manager, until: Callable[[], bool] = lambda: True, then: int = 0) -> None:
    """Passes of every manager in turn until `until()` holds (at most 30 rounds), then `then` rounds more:
    enough for a VM found in the folder to be discovered, completed and destroyed."""
    rounds = 0
    while not until():
        rounds += 1
        assert rounds <= 30, "condition not reached after 30 rounds"
        for manager in managers:
            await manager.run_once()
            await manager.drain()
    for _ in range(then):
        for manager in managers:
            await manager.run_once()
            await manager.drain()


def full(*clients: redis.Redis) -> Callable[[], bool]:
    return lambda: all(len(states(c, "pool1")["ready"]) == 2 for c in clients)


async def test_two_poolers_on_one_folder_leave_each_other_alone(make_manager: MakeManager,
                                                                other_pooler: MakeOther, redis_url: str,
                                                                sync_redis: redis.Redis, aredis: aioredis.Redis,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # Report 6: a staging copy of the configuration with a Redis of its own, on the same folders (the
    # dummy provider's VMs live on the production Redis, which plays the shared vCenter).
    config = dummy_config(POOL)
    prod = await make_manager(config)
    await run(prod, until=full(sync_redis))
    taken = [(await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]]
    staging, staging_redis = await other_pooler(config, providers_on=redis_url)
    await run(prod, staging, until=full(sync_redis, staging_redis))
    taken.append((await Checkout(config, staging.inventory, NullMetrics()).take(from_path("pool1"))).hosts()[0])
    await run(prod, staging, until=full(sync_redis, staging_redis), then=4)

    mine, theirs = recorded(sync_redis), recorded(staging_redis)
    assert len(mine) == len(theirs) == 3 and not mine & theirs
    assert set(in_folder(sync_redis)) == mine | theirs, "no VM of either pooler destroyed"
    assert taken[0] in states(sync_redis, "pool1")["running"]
    assert taken[1] in states(staging_redis, "pool1")["running"]
    ids = {"prod": sync_redis.get(K.pooler_id()), "staging": staging_redis.get(K.pooler_id())}
    assert ids["prod"] and ids["staging"] and ids["prod"] != ids["staging"]
    assert prod.ctx.pooler_id == ids["prod"] and staging.ctx.pooler_id == ids["staging"]
    for owner, other, hosts in (("prod", "staging", mine), ("staging", "prod", theirs)):
        for host in hosts:
            assert in_folder(sync_redis)[host]["pooler_id"] == ids[owner]
            lines = left_alone(caplog, host)
            assert len(lines) == 1 and ids[owner] in lines[0] and ids[other] in lines[0], lines
    # Each remembers the other's VMs, to report them once.
    assert sync_redis.hgetall(K.spared("pool1")) == dict.fromkeys(theirs, ids["staging"])
    assert staging_redis.hgetall(K.spared("pool1")) == dict.fromkeys(mine, ids["prod"])


async def test_lost_record_destroyed_unmarked_left_alone_unless_purge(make_manager: MakeManager,
                                                                       sync_redis: redis.Redis,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    manager = await make_manager(dummy_config(POOL))
    await run(manager, until=full(sync_redis))
    put_vm(sync_redis, "lost", sync_redis.get(K.pooler_id()))  # a clone of ours whose record Redis lost
    put_vm(sync_redis, "by-hand", None)
    await run(manager, then=4)
    assert "lost" not in in_folder(sync_redis), "ours: destroyed"
    assert "by-hand" in in_folder(sync_redis) and "by-hand" not in recorded(sync_redis)
    assert len(left_alone(caplog, "by-hand")) == 1 and "purge_unconfigured" in left_alone(caplog, "by-hand")[0]
    assert sync_redis.hgetall(K.spared("pool1")) == {"by-hand": ""}
    await manager.shutdown()  # hands the pool over at once

    purging = await make_manager(dummy_config(POOL, purge_unconfigured="true"))
    await run(purging, until=lambda: "by-hand" not in in_folder(sync_redis))
    assert not sync_redis.exists(K.spared("pool1"))
    assert "by-hand" not in recorded(sync_redis) and len(states(sync_redis, "pool1")["ready"]) == 2


async def test_another_poolers_vm_found_before_marks_leaves_discovered(make_manager: MakeManager,
                                                                        sync_redis: redis.Redis,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    # A version without marks had found another pooler's VM and put it in `discovered`: after the
    # upgrade it is not completed, but left alone.
    manager = await make_manager(dummy_config(POOL))
    await run(manager, until=full(sync_redis))
    put_vm(sync_redis, "theirs", "staging")
    sync_redis.sadd(K.discovered("pool1"), "theirs")
    await run(manager, then=3)
    assert "theirs" in in_folder(sync_redis) and "theirs" not in recorded(sync_redis)
    assert sync_redis.hgetall(K.spared("pool1")) == {"theirs": "staging"}
    assert len(left_alone(caplog, "theirs")) == 1
    # The other pooler destroys it: the entry goes, with one line.
    sync_redis.hdel(K.dummy_folder("dummy", "pool1"), "theirs")
    await run(manager, then=1)
    assert not sync_redis.exists(K.spared("pool1"))
    assert [r for r in caplog.records if r.getMessage().startswith("left alone VM gone pool=pool1 vm=theirs")]


async def test_pooler_id_shared_on_one_redis_and_stored_again(make_manager: MakeManager,
                                                              sync_redis: redis.Redis) -> None:
    config = dummy_config(POOL)
    first = await make_manager(config, manager_id="m1")
    second = await make_manager(config, manager_id="m2")
    await run(first, second, until=full(sync_redis))
    stored = sync_redis.get(K.pooler_id())
    assert stored and first.ctx.pooler_id == second.ctx.pooler_id == stored
    assert {vm["pooler_id"] for vm in in_folder(sync_redis).values()} == {stored}
    # Redis loses its data while the managers run: the next pass stores the same id again.
    sync_redis.delete(K.pooler_id())
    await run(second, then=1)
    assert sync_redis.get(K.pooler_id()) == stored == second.ctx.pooler_id


async def test_configured_pooler_id(make_manager: MakeManager, sync_redis: redis.Redis,
                                    caplog: pytest.LogCaptureFixture) -> None:
    sync_redis.set(K.pooler_id(), "stored-id")
    manager = await make_manager(dummy_config(POOL, pooler_id="prod-1"))
    await run(manager, until=full(sync_redis))
    assert manager.ctx.pooler_id == "prod-1"
    assert {vm["pooler_id"] for vm in in_folder(sync_redis).values()} == {"prod-1"}
    mismatch = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "pooler id" in
                r.getMessage()]
    assert len(mismatch) == 1 and "prod-1" in mismatch[0] and "stored-id" in mismatch[0]
    sync_redis.delete(K.pooler_id())
    await run(manager, then=1)
    assert sync_redis.get(K.pooler_id()) == "prod-1", "stored when Redis holds none"


def test_settings() -> None:
    defaults = dummy_config(POOL)
    assert defaults.app.pooler_id is None and defaults.app.purge_unconfigured is False
    chosen = dummy_config(POOL, pooler_id="prod.site-1:a", purge_unconfigured="true")
    assert chosen.app.pooler_id == "prod.site-1:a" and chosen.app.purge_unconfigured is True
    with pytest.raises(ConfigError, match="config.pooler_id"):
        dummy_config(POOL, pooler_id="'two words'")
    with pytest.raises(ConfigError, match="config.purge_unconfigured"):
        dummy_config(POOL, purge_unconfigured="sometimes")


async def test_spare_script(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.sadd(K.ready("pool1"), "known")
    sync_redis.hset(K.vm("shared"), "pool", "pool2")  # a VM of another pool sharing the folder
    sync_redis.sadd(K.running("pool2"), "shared")
    sync_redis.sadd(K.discovered("pool1"), "found-earlier")
    reply = await inventory.spare("pool1", {"known": "x", "shared": "x", "found-earlier": "x", "plain": None})
    assert reply.new == {"found-earlier": "x", "plain": ""} and not reply.changed and not reply.dropped
    assert not sync_redis.smembers(K.discovered("pool1")), "not ours to destroy"
    again = await inventory.spare("pool1", {"found-earlier": "y", "plain": None})
    assert not again.new and again.changed == {"found-earlier": "y"} and not again.dropped
    gone = await inventory.spare("pool1", {"plain": None})
    assert gone.dropped == ["found-earlier"] and sync_redis.hgetall(K.spared("pool1")) == {"plain": ""}
    assert (await inventory.spare("pool1", {})).dropped == ["plain"]
    assert not sync_redis.exists(K.spared("pool1"))


def test_marks_in_vsphere_annotations() -> None:
    config = make_config(":providers:\n  :vsphere:\n    server: vc.example\n    username: u\n    password: p\n"
                         ":pools:\n  - name: p\n    size: 1\n    template: t/t\n    folder: f\n")
    provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
    note = provider._annotation(CloneSpec("vm1", "t/t", "f", annotation='{"pool": "p"}', pooler_id="abc"))
    assert pooler_mark(note) == "abc" and json.loads(note)["created_by"] == "u"
    free = provider._annotation(CloneSpec("vm1", "t/t", "f", annotation="made for x", pooler_id="abc"))
    assert pooler_mark(free) == "abc" and json.loads(free)["notes"] == "made for x"
    assert provider._annotation(CloneSpec("vm1", "t/t", "f", annotation="made for x")) == "made for x"
    # The original vmpooler's note names the vCenter user, not a pooler; anything else is no mark either.
    original = json.dumps({"name": "vm1", "created_by": "u", "base_template": "t/t",
                           "creation_timestamp": "2026-01-01 00:00:00 +0000"})
    for other in (original, None, "", "pooler_id: abc", '["pooler_id"]', '{"pooler_id": 5}', '{"pooler_id": ""}'):
        assert pooler_mark(other) is None, other


def test_marks_in_dummy_records() -> None:
    assert DummyVm.from_json('{"on": true, "pooler_id": "abc"}') == DummyVm(on=True, pooler_id="abc")
    assert DummyVm.from_json('{"on": true, "pooler_id": 5}') == DummyVm(on=True)
    assert DummyVm.from_json(DummyVm(pooler_id="abc").to_json()) == DummyVm(pooler_id="abc")
