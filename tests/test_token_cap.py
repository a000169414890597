"""`config: max_vms_per_token`: enforced inside checkout.lua against the token's held set, which every
script that takes a VM out of `running` keeps (return, the manager's move and forget)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import make_config
from vmpooler_core.auth import hash_password
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config
from vmpooler_core.errors import NoCapacity, TooManyVms
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.request import from_mapping
from vmpoolerd.manager import Manager

K = Keys()
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"
OTHER = "bbcdefghijklmnopqrstuvwxyz012345"


def capped(cap: int | None = 2) -> Config:
    users = f"auth:\n  provider: users\n  users:\n    jdoe: '{hash_password('x', iterations=1000)}'\n"
    setting = f"config:\n  max_vms_per_token: {cap}\n" if cap else ""
    return make_config(f"{setting}{users}providers: {{dummy: {{}}}}\n"
                       "pools:\n  - {name: pool1, size: 10}\n  - {name: pool2, size: 10}\n")


def ready(r: redis.Redis, pool: str, *hosts: str) -> None:
    for host in hosts:
        r.sadd(K.ready(pool), host)
        r.hset(K.vm(host), mapping={"template": pool, "pool": pool})


@pytest.fixture
def r(sync_redis: redis.Redis) -> redis.Redis:
    ready(sync_redis, "pool1", *(f"a{n}" for n in range(10)))
    ready(sync_redis, "pool2", *(f"b{n}" for n in range(10)))
    for token in (TOKEN, OTHER):
        sync_redis.hset(K.token(token), "user", "jdoe")
    return sync_redis


@pytest.fixture
def co(inventory: Inventory) -> Checkout:
    return Checkout(capped(), inventory, NullMetrics())


def held(r: redis.Redis, token: str = TOKEN) -> set[str]:
    return r.smembers(K.held(token))  # type: ignore[return-value]


async def test_the_cap_counts_across_pools_and_refuses_without_taking(co: Checkout, r: redis.Redis) -> None:
    first = await co.take(from_mapping({"pool1": "1", "pool2": "1"}), token=TOKEN)
    assert held(r) == set(first.hosts())
    with pytest.raises(TooManyVms) as err:
        await co.take(from_mapping({"pool1": "1"}), token=TOKEN)
    assert (err.value.held, err.value.cap) == (2, 2)
    assert r.scard(K.ready("pool1")) == 9 and r.scard(K.running("pool1")) == 1
    # Another token, and checkouts without a token, are not affected.
    await co.take(from_mapping({"pool1": "2"}), token=OTHER)
    await co.take(from_mapping({"pool1": "3"}))
    assert r.scard(K.running("pool1")) == 6


async def test_one_request_over_the_cap_is_refused_whole(co: Checkout, r: redis.Redis) -> None:
    with pytest.raises(TooManyVms) as err:
        await co.take(from_mapping({"pool1": "2", "pool2": "1"}), token=TOKEN)
    assert (err.value.held, err.value.cap) == (0, 2)
    assert r.scard(K.ready("pool1")) == 10 and not held(r)


async def test_a_short_pool_still_answers_no_capacity(co: Checkout, r: redis.Redis) -> None:
    r.delete(K.ready("pool2"))
    with pytest.raises(NoCapacity):
        await co.take(from_mapping({"pool2": "1"}), token=TOKEN)
    assert not held(r)


async def test_every_way_out_of_running_frees_a_place(co: Checkout, inventory: Inventory, r: redis.Redis) -> None:
    hosts = (await co.take(from_mapping({"pool1": "2"}), token=TOKEN)).hosts()
    await co.give_back(hosts[0], TOKEN)  # the API's and the CLI's return
    assert held(r) == {hosts[1]}
    assert await inventory.move("pool1", hosts[1], "running", "completed")  # the manager: lifetime over
    assert not held(r)
    hosts = (await co.take(from_mapping({"pool1": "2"}), token=TOKEN)).hosts()
    await inventory.forget("pool1", hosts[0], destroyed=True)  # the manager: vanished from the provider
    assert held(r) == {hosts[1]}
    assert await inventory.move("pool1", hosts[1], "completed", "ready") is False  # not in completed: no-op
    assert held(r) == {hosts[1]}


async def test_a_vm_entering_running_with_a_token_is_counted(inventory: Inventory, r: redis.Redis) -> None:
    r.sadd(K.pending("pool1"), "od1")
    await inventory.move("pool1", "od1", "pending", "running", {"token:token": TOKEN, "token:user": "jdoe"})
    assert held(r) == {"od1"}


async def test_stale_entries_are_dropped_before_refusing(co: Checkout, r: redis.Redis) -> None:
    hosts = (await co.take(from_mapping({"pool1": "2"}), token=TOKEN)).hosts()
    # Taken out of `running` by something that does not keep the held set (by hand, say).
    r.srem(K.running("pool1"), hosts[0])
    await co.take(from_mapping({"pool1": "1"}), token=TOKEN)
    assert len(held(r)) == 2 and hosts[0] not in held(r)


async def test_without_a_cap_the_held_set_is_still_kept(inventory: Inventory, r: redis.Redis) -> None:
    # So that a cap configured later counts what tokens already hold.
    co = Checkout(capped(None), inventory, NullMetrics())
    got = await co.take(from_mapping({"pool1": "5"}), token=TOKEN)
    assert held(r) == set(got.hosts())


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    yield made
    for client in made:
        await client.aclose()


async def test_concurrent_checkouts_from_several_processes_never_pass_the_cap(
        clients: list[aioredis.Redis], r: redis.Redis) -> None:
    # Four clients with their own connections stand for four API processes.
    config = capped(3)
    checkouts = [Checkout(config, Inventory(client), NullMetrics()) for client in clients]
    results = await asyncio.gather(*(checkouts[n % 4].take(from_mapping({"pool1": "1"}), token=TOKEN)
                                     for n in range(10)), return_exceptions=True)
    assert sum(not isinstance(result, BaseException) for result in results) == 3
    assert all(isinstance(result, TooManyVms) for result in results if isinstance(result, BaseException))
    assert len(held(r)) == 3 and r.scard(K.running("pool1")) == 3 and r.scard(K.ready("pool1")) == 7


def left_by_the_original(r: redis.Redis, *hosts: str, token: str = TOKEN) -> None:
    """VMs today's original checked out with `token` (contract B2.3: running, active, the token fields),
    in the pools it recorded; it keeps no held sets."""
    r.sadd(K.pools(), "pool1", "pool2")
    for host in hosts:
        r.sadd(K.running("pool2"), host)
        r.hset(K.active("pool2"), host, "2026-03-01 10:00:00 -0700")
        r.hset(K.vm(host), mapping={"template": "pool2", "pool": "pool2", "checkout": "2026-03-01 10:00:00 -0700",
                                    "token:token": token, "token:user": "jdoe"})


async def test_vms_the_original_checked_out_with_the_token_count(co: Checkout, r: redis.Redis) -> None:
    left_by_the_original(r, "h1", "h2")
    left_by_the_original(r, "h3", token="c" * 32)  # a token deleted since: its VM is no one's to count
    with pytest.raises(TooManyVms) as err:
        await co.take(from_mapping({"pool1": "1"}), token=TOKEN)
    assert (err.value.held, err.value.cap) == (2, 2) and held(r) == {"h1", "h2"}
    assert not r.exists(K.held("c" * 32)) and r.scard(K.ready("pool1")) == 10
    await co.take(from_mapping({"pool1": "2"}), token=OTHER)
    await co.give_back("h1", TOKEN)  # returned through us: a place is free
    await co.take(from_mapping({"pool1": "1"}), token=TOKEN)
    assert len(held(r)) == 2 and "h1" not in held(r)


async def test_a_manager_start_counts_what_the_original_handed_out_since(co: Checkout, r: redis.Redis,
                                                                        aredis: aioredis.Redis) -> None:
    await co.take(from_mapping({"pool1": "1"}), token=TOKEN)  # the sets are complete from here on
    left_by_the_original(r, "h4")  # the original ran again on this Redis, and handed out h4
    assert "h4" not in held(r)
    manager = Manager(capped(), aredis, {}, NullMetrics(), stop_grace=1.0)
    try:
        await manager.run_once(pools=[])
    finally:
        await manager.shutdown()
    assert "h4" in held(r)
    with pytest.raises(TooManyVms):
        await co.take(from_mapping({"pool1": "1"}), token=TOKEN)
