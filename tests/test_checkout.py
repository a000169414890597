"""The seed's checkout rules, against a real Redis server."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import StatsdNames, make_config
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config
from vmpooler_core.errors import Conflict, InvalidRequest, NoCapacity, NotFound, Unauthorized
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.request import from_mapping, from_path

K = Keys()


def ready(r: redis.Redis, pool: str, *hosts: str) -> None:
    for host in hosts:
        r.sadd(K.ready(pool), host)
        r.hset(K.vm(host), mapping={"template": pool, "pool": pool, "clone": "2016-07-25 10:00:00 +0000"})


def state(r: redis.Redis, pool: str) -> dict[str, set[str]]:
    return {s: r.smembers(K.state(s, pool)) for s in ("ready", "running")}  # type: ignore[misc]


@pytest.fixture
def metrics() -> StatsdNames:
    return StatsdNames()


@pytest.fixture
def co(config: Config, inventory: Inventory, metrics: StatsdNames) -> Checkout:
    return Checkout(config, inventory, metrics)


async def test_one_vm_moves_ready_to_running(co: Checkout, sync_redis: redis.Redis, metrics: StatsdNames) -> None:
    ready(sync_redis, "pool1", "vm1")
    got = await co.take(from_mapping({"pool1": "1"}))
    assert got.by_pool() == {"pool1": ["vm1"]}
    assert state(sync_redis, "pool1") == {"ready": set(), "running": {"vm1"}}
    assert sync_redis.hget(K.active("pool1"), "vm1") == sync_redis.hget(K.vm("vm1"), "checkout")
    assert metrics.counts == ["checkout.success.pool1"]


async def test_alias_is_keyed_by_real_pool_name(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    got = await co.take(from_mapping({"poolone": "1"}))
    assert got.by_pool() == {"pool1": ["vm1"]}
    assert got.vms == (("poolone", "pool1", "vm1"),)


async def test_unknown_name_takes_nothing(co: Checkout, sync_redis: redis.Redis, metrics: StatsdNames) -> None:
    ready(sync_redis, "pool1", "vm1")
    with pytest.raises(NotFound) as err:
        await co.take(from_mapping({"pool1": "1", "poolpoolpool": "1"}))
    assert err.value.names == ("poolpoolpool",)
    assert state(sync_redis, "pool1") == {"ready": {"vm1"}, "running": set()}
    assert metrics.counts == ["checkout.invalid.poolpoolpool"]


async def test_empty_pool_returns_everything(co: Checkout, sync_redis: redis.Redis, metrics: StatsdNames) -> None:
    ready(sync_redis, "pool1", "vm1", "vm2")
    with pytest.raises(NoCapacity) as err:
        await co.take(from_mapping({"pool1": "2", "pool2": "3"}))
    assert err.value.name == "pool2"
    assert state(sync_redis, "pool1") == {"ready": {"vm1", "vm2"}, "running": set()}
    assert not sync_redis.exists(K.active("pool1"))
    assert sync_redis.hget(K.vm("vm1"), "checkout") is None
    assert metrics.counts == ["checkout.empty.pool2"]


async def test_short_in_first_pool_returns_everything(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    ready(sync_redis, "pool2", "vm2", "vm3")
    with pytest.raises(NoCapacity):
        await co.take(from_path("pool2+pool1+pool1"))
    assert state(sync_redis, "pool1")["ready"] == {"vm1"}
    assert state(sync_redis, "pool2")["ready"] == {"vm2", "vm3"}


async def test_several_pools_in_one_request(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1", "a2")
    ready(sync_redis, "pool2", "b1", "b2", "b3")
    got = await co.take(from_mapping({"pool1": "2", "pool2": 3}))
    pools = got.by_pool()
    assert list(pools) == ["pool1", "pool2"]
    assert sorted(pools["pool1"]) == ["a1", "a2"] and sorted(pools["pool2"]) == ["b1", "b2", "b3"]
    assert state(sync_redis, "pool2") == {"ready": set(), "running": {"b1", "b2", "b3"}}


async def test_alias_to_an_empty_pool(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool2", "b1")
    with pytest.raises(NoCapacity) as err:
        await co.take(from_path("poolone"))
    assert err.value.name == "poolone"
    assert state(sync_redis, "pool2")["ready"] == {"b1"}


async def test_config_with_no_aliases_at_all(inventory: Inventory, sync_redis: redis.Redis) -> None:
    cfg = make_config("providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n  - {name: pool2, size: 1}\n")
    co = Checkout(cfg, inventory, NullMetrics())
    ready(sync_redis, "pool1", "vm1")
    assert (await co.take(from_path("pool1"))).hosts() == ["vm1"]
    with pytest.raises(NoCapacity):
        await co.take(from_path("pool1"))
    with pytest.raises(NotFound):
        await co.take(from_path("poolone"))


async def test_name_and_alias_merge_under_the_pool(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "vm2")
    got = await co.take(from_mapping({"pool1": 1, "poolone": 1}))
    assert list(got.by_pool()) == ["pool1"] and sorted(got.by_pool()["pool1"]) == ["vm1", "vm2"]


async def test_multi_pool_alias_spreads_and_falls_over(inventory: Inventory, sync_redis: redis.Redis) -> None:
    cfg = make_config("providers: {dummy: {}}\n"
                      "pools:\n - {name: a, alias: generic, size: 1}\n - {name: b, alias: generic, size: 1}\n")
    co = Checkout(cfg, inventory, NullMetrics())
    ready(sync_redis, "a", "a1")
    ready(sync_redis, "b", "b1", "b2")
    got = await co.take(from_mapping({"generic": 3}))
    assert sorted(got.hosts()) == ["a1", "b1", "b2"]
    assert set(got.by_pool()) == {"a", "b"}


async def test_pool_itself_is_tried_before_its_alias_targets(inventory: Inventory, sync_redis: redis.Redis) -> None:
    cfg = make_config("providers: {dummy: {}}\npools:\n - {name: a, size: 1}\n - {name: b, alias: x, size: 1}\n")
    co = Checkout(cfg, inventory, NullMetrics())
    ready(sync_redis, "b", "b1")
    assert (await co.take(from_path("x"))).by_pool() == {"b": ["b1"]}


@pytest.mark.parametrize("body", [{"pool1": "-1"}, {"pool1": "x"}, {"pool1": 1.5}, {"pool1": True},
                                  {"pool1": None}, {"pool1": "101"}, {}, {"pool1": 0}])
async def test_invalid_counts(co: Checkout, sync_redis: redis.Redis, body: dict[str, object]) -> None:
    ready(sync_redis, "pool1", "vm1")
    with pytest.raises(InvalidRequest):
        await co.take(from_mapping(body))
    assert state(sync_redis, "pool1")["ready"] == {"vm1"}


@pytest.mark.parametrize("body", [[], "pool1", 3, None])
def test_non_object_bodies_are_invalid(body: object) -> None:
    with pytest.raises(InvalidRequest):
        from_mapping(body)


@pytest.mark.parametrize("spec", ["", "+", "a++b", "pool1+"])
def test_bad_path_forms(spec: str) -> None:
    with pytest.raises(InvalidRequest):
        from_path(spec)


def test_path_form_counts() -> None:
    assert from_path("a+a+b").counts == (("a", 2), ("b", 1))


async def test_zero_count_entry_contributes_nothing(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    got = await co.take(from_mapping({"pool1": "1", "pool2": "0"}))
    assert got.by_pool() == {"pool1": ["vm1"]}


TOKEN = "abcdefghijklmnopqrstuvwxyz012345"
AUTH_YAML = """
config: {vm_lifetime_auth: 2}
auth: {provider: users, users: {jdoe: 'x'}}
providers: {dummy: {}}
pools:
  - {name: pool1, size: 5}
"""


async def test_token_checkout_records_owner_and_lifetime(inventory: Inventory, sync_redis: redis.Redis) -> None:
    co = Checkout(make_config(AUTH_YAML), inventory, NullMetrics())
    sync_redis.hset(K.token(TOKEN), mapping={"user": "jdoe", "created": "x"})
    ready(sync_redis, "pool1", "vm1")
    await co.take(from_path("pool1"), token=TOKEN)
    vm = sync_redis.hgetall(K.vm("vm1"))
    assert vm["token:token"] == TOKEN and vm["token:user"] == "jdoe" and vm["lifetime"] == "2"
    assert sync_redis.hget(K.token(TOKEN), "last")


async def test_bad_token_takes_nothing(inventory: Inventory, sync_redis: redis.Redis) -> None:
    co = Checkout(make_config(AUTH_YAML), inventory, NullMetrics())
    ready(sync_redis, "pool1", "vm1")
    with pytest.raises(Unauthorized):
        await co.take(from_path("pool1"), token="nosuchtoken")
    assert state(sync_redis, "pool1") == {"ready": {"vm1"}, "running": set()}


async def test_token_ignored_without_auth(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    await co.take(from_path("pool1"), token="whatever")
    assert "lifetime" not in sync_redis.hgetall(K.vm("vm1"))


async def test_return_moves_running_to_completed(co: Checkout, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    await co.take(from_path("pool1"))
    assert await co.give_back("vm1") == "pool1"
    assert sync_redis.smembers(K.completed("pool1")) == {"vm1"}
    assert not sync_redis.hexists(K.active("pool1"), "vm1")
    with pytest.raises(Conflict):
        await co.give_back("vm1")
    with pytest.raises(NotFound):
        await co.give_back("nosuchvm")


async def test_return_of_token_vm_needs_the_owner_token(inventory: Inventory, sync_redis: redis.Redis) -> None:
    co = Checkout(make_config(AUTH_YAML), inventory, NullMetrics())
    sync_redis.hset(K.token(TOKEN), mapping={"user": "jdoe"})
    sync_redis.hset(K.token("other" + TOKEN[5:]), mapping={"user": "eve"})
    ready(sync_redis, "pool1", "vm1")
    await co.take(from_path("pool1"), token=TOKEN)
    for wrong in ("", "other" + TOKEN[5:]):
        with pytest.raises(Unauthorized):
            await co.give_back("vm1", wrong)
    assert sync_redis.smembers(K.running("pool1")) == {"vm1"}
    assert await co.give_back("vm1", TOKEN) == "pool1"
