"""Each manager-side transition of the Redis inventory, and the status and VM documents."""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import make_config
from vmpooler_core import clock, status, vms
from vmpooler_core.access import Access
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest, NotFound, Unauthorized
from vmpooler_core.inventory import Inventory, new_token
from vmpooler_core.keys import Keys
from vmpooler_core.replies import Forgotten, Reservation

K = Keys()


async def reserve(inventory: Inventory, sync_redis: redis.Redis, pool: str, host: str, template: str) -> Reservation:
    """A clone recorded as the manager's fill records it: under the pool's lease, below its size."""
    sync_redis.set(K.lease(pool), "m1")
    return await inventory.reserve_clone(pool, host, template, size=5, owner="m1")


async def test_pending_to_ready_to_completed(inventory: Inventory, sync_redis: redis.Redis) -> None:
    assert await reserve(inventory, sync_redis, "pool1", "vm1", "templates/pool1") is Reservation.RESERVED
    again = await reserve(inventory, sync_redis, "pool1", "vm1", "templates/pool1")
    assert again is Reservation.TAKEN, "hostname reused"
    assert sync_redis.smembers(K.pending("pool1")) == {"vm1"}
    vm = sync_redis.hgetall(K.vm("vm1"))
    assert vm["pool"] == vm["template"] == "pool1" and clock.parse(vm["clone"])
    assert vm["clone_template"] == "templates/pool1" and vm["cloned_by"] == "m1"
    assert await inventory.move("pool1", "vm1", "pending", "ready", {"ready": "now"})
    assert not await inventory.move("pool1", "vm1", "pending", "ready"), "moved twice"
    assert sync_redis.smembers(K.ready("pool1")) == {"vm1"} and not sync_redis.smembers(K.pending("pool1"))
    assert sync_redis.hget(K.vm("vm1"), "ready") == "now"
    assert await inventory.move("pool1", "vm1", "ready", "completed")
    assert sync_redis.smembers(K.completed("pool1")) == {"vm1"}


async def test_running_to_completed_drops_active(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.sadd(K.running("pool1"), "vm1")
    sync_redis.hset(K.active("pool1"), "vm1", "x")
    assert await inventory.move("pool1", "vm1", "running", "completed")
    assert not sync_redis.hexists(K.active("pool1"), "vm1")


async def test_forget_removes_from_every_set_and_expires(inventory: Inventory, sync_redis: redis.Redis) -> None:
    assert await reserve(inventory, sync_redis, "pool1", "vm1", "t") is Reservation.RESERVED
    sync_redis.smove(K.pending("pool1"), K.completed("pool1"), "vm1")
    assert await inventory.forget("pool1", "vm1", destroyed=True) == Forgotten(1)
    assert not any(sync_redis.sismember(K.state(s, "pool1"), "vm1") for s in ("pending", "completed"))
    assert sync_redis.hget(K.vm("vm1"), "destroy")
    assert 0 < sync_redis.ttl(K.vm("vm1")) <= 168 * 3600


async def test_a_destroy_is_recorded_for_a_vm_without_a_hash(inventory: Inventory, sync_redis: redis.Redis) -> None:
    # Discovered in the folder after Redis lost its record (a kill), then destroyed: it leaves a trace.
    assert await inventory.discover("pool1", ["stray"]) == ["stray"]
    sync_redis.smove(K.discovered("pool1"), K.completed("pool1"), "stray")
    assert await inventory.forget("pool1", "stray", destroyed=True) == Forgotten(1)
    assert sync_redis.hget(K.vm("stray"), "destroy")
    assert 0 < sync_redis.ttl(K.vm("stray")) <= 168 * 3600
    # A VM forgotten without a destroy (it vanished) gets no hash.
    assert await inventory.forget("pool1", "ghost", destroyed=False) == Forgotten(0)
    assert not sync_redis.exists(K.vm("ghost"))


async def test_discover_only_marks_unknown_vms(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.sadd(K.ready("pool1"), "known")
    assert await inventory.discover("pool1", ["known", "stray"]) == ["stray"]
    assert await inventory.discover("pool1", ["stray"]) == []
    assert sync_redis.smembers(K.discovered("pool1")) == {"stray"}


async def test_counts_and_pool_state(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.sadd(K.ready("pool1"), "a", "b")
    sync_redis.sadd(K.running("pool2"), "c")
    counts = await inventory.counts(["pool1", "pool2"])
    assert counts["pool1"]["ready"] == 2 and counts["pool2"]["running"] == 1 and counts["pool2"]["ready"] == 0
    assert (await inventory.pool_state("pool1"))[0]["ready"] == {"a", "b"}


async def test_tokens(inventory: Inventory) -> None:
    token = await inventory.create_token("jdoe")
    assert len(token) == 32 and token[0] in "abcdefghijklmnopqrstuvwxy" and token.isalnum()
    assert (await inventory.token(token))["user"] == "jdoe"
    assert token in await inventory.tokens()
    assert await inventory.delete_token(token)
    assert not await inventory.delete_token(token)
    assert len({new_token() for _ in range(100)}) == 100


async def test_status_document(config: Config, inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.sadd(K.ready("pool1"), "a", "b")
    sync_redis.sadd(K.running("pool1"), "c")
    sync_redis.sadd(K.pending("pool2"), "d", "e")
    sync_redis.set(K.clone_tasks(), 1)
    today = clock.today()
    sync_redis.hset(K.boot_stats(today), mapping={"pool1:a": "10", "pool1:b": "20"})
    doc = await status.status(config, inventory)
    assert list(doc) == ["boot", "capacity", "clone", "pools", "queue", "status"]
    assert doc["capacity"] == {"current": 2, "total": 15, "percent": 13.3}
    assert doc["queue"] == {"pending": 2, "cloning": 1, "booting": 1, "ready": 2, "running": 1, "completed": 0,
                            "total": 5}
    assert doc["boot"]["duration"] == {"average": 15.0, "min": 10.0, "max": 20.0, "total": 30.0}
    assert doc["boot"]["count"] == {"total": 2}
    assert doc["clone"]["count"] == {"total": 0}
    assert doc["pools"]["pool1"] == {"ready": 2, "running": 1, "pending": 0, "max": 5, "alias": ["poolone"]}
    assert doc["status"]["ok"] is False and doc["status"]["empty"] == ["pool2"]
    assert doc["status"]["message"] == "Found 1 empty pools."


async def test_describe_a_running_vm(config: Config, inventory: Inventory, sync_redis: redis.Redis) -> None:
    checkout = time.time() - 1800
    sync_redis.sadd(K.running("pool1"), "vm1")
    sync_redis.hset(K.vm("vm1"), mapping={"template": "pool1", "checkout": clock.stamp(checkout),
                                          "tag:project": "x", "snapshot:abc": clock.stamp(), "disk": "+8gb:+16gb"})
    doc = await vms.describe(config, inventory, "vm1", resolve=False)
    assert doc == {"template": "pool1", "lifetime": 24, "running": 0.5, "state": "running", "tags": {"project": "x"},
                   "snapshots": ["abc"], "disk": ["+8gb", "+16gb"], "ip": "", "domain": "company.com"}
    with pytest.raises(NotFound):
        await vms.describe(config, inventory, "nosuchvm")
    with pytest.raises(NotFound):
        await vms.describe(config, inventory, "bad/name")


def test_shorten_only_strips_the_configured_domain() -> None:
    assert vms.shorten("abc.company.com", "company.com") == "abc"
    assert vms.shorten("abc.other.com", "company.com") == "abc.other.com"
    assert vms.shorten("abc.company.com", None) == "abc.company.com"


def test_modifications_are_validated_before_anything_is_written() -> None:
    cfg = make_config("config: {allowed_tags: [project], max_lifetime_upper_limit: 168}\n"
                      "tagfilter: {project: '(.*)\\/'}\n")
    change = vms.parse_modification({"lifetime": "4", "tags": {"project": "foo.com/x.html"}}, cfg)
    assert change.lifetime == 4 and change.tags == {"project": "foo.com"}
    for bad in ({"lifetime": "0"}, {"lifetime": -1}, {"lifetime": "x"}, {"lifetime": 200}, {"tags": {"other": "v"}},
                {"tags": []}, {"colour": "red"}, [], "x"):
        with pytest.raises(InvalidRequest):
            vms.parse_modification(bad, cfg)
    assert vms.parse_modification({"tags": {"project": ""}}, cfg).tags == {}


async def test_a_lifetime_change_with_auth_needs_a_token(inventory: Inventory) -> None:
    auth = make_config("auth: {provider: users, users: {a: b}}\n")
    with pytest.raises(Unauthorized):
        await Access(auth, inventory).modification({}, {"lifetime": 2}, None)


async def test_revert_needs_a_recorded_snapshot(inventory: Inventory, sync_redis: redis.Redis) -> None:
    name = await vms.request_snapshot(inventory, "vm1")
    assert len(name) == 32 and sync_redis.smembers(K.snapshot_tasks()) == {f"vm1:{name}"}
    with pytest.raises(NotFound):
        await vms.request_revert(inventory, "vm1", {}, name)
    await vms.request_revert(inventory, "vm1", {f"snapshot:{name}": clock.stamp()}, name)
    assert sync_redis.smembers(K.revert_tasks()) == {f"vm1:{name}"}
    assert await vms.request_disk(inventory, "vm1", "8") == "+8gb"
    for bad in ("0", "-1", "x", "4096"):
        with pytest.raises(InvalidRequest):
            await vms.request_disk(inventory, "vm1", bad)
