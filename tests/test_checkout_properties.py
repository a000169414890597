"""Property-based tests of the checkout invariants against a real Redis (hypothesis)."""

from __future__ import annotations

import asyncio

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_config
from vmpooler_core.checkout import Allocation, Checkout
from vmpooler_core.errors import InvalidRequest, NoCapacity, NotFound
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest

CONFIG = make_config("""
providers: {dummy: {}}
pools:
  - {name: p1, alias: [one, all], size: 1}
  - {name: p2, alias: [all, two], size: 1}
  - {name: p3, alias: [two], size: 1}
""")
POOLS = ("p1", "p2", "p3")
NAMES = (*POOLS, "one", "two", "all", "nope")
K = Keys()

stocks = st.fixed_dictionaries({pool: st.integers(0, 6) for pool in POOLS})
requests = st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 5)), min_size=0, max_size=5,
                    unique_by=lambda e: e[0])


def _state(r: redis.Redis) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    return {p: (frozenset(r.smembers(K.ready(p))), frozenset(r.smembers(K.running(p)))) for p in POOLS}  # type: ignore[misc]


async def _take(url: str, counts: tuple[tuple[str, int], ...]) -> Allocation | Exception:
    client = connect(make_config(f"redis: {{url: '{url}'}}").redis)
    try:
        return await Checkout(CONFIG, Inventory(client), NullMetrics()).take(CheckoutRequest(counts))
    except (NotFound, NoCapacity, InvalidRequest) as err:
        return err
    finally:
        await client.aclose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stock=stocks, counts=requests)
def test_checkout_is_all_or_nothing(redis_url: str, sync_redis: redis.Redis, stock: dict[str, int],
                                    counts: list[tuple[str, int]]) -> None:
    sync_redis.flushall()
    for pool, n in stock.items():
        if n:
            sync_redis.sadd(K.ready(pool), *(f"{pool}-{i}" for i in range(n)))
    before = _state(sync_redis)
    result = asyncio.run(_take(redis_url, tuple(counts)))
    after = _state(sync_redis)
    total = sum(n for _, n in counts)
    names = {name for name, _ in counts}

    if isinstance(result, Exception):
        assert after == before, "a failed request changed the inventory"
        if "nope" in names:
            assert isinstance(result, NotFound)
        elif total == 0:
            assert isinstance(result, InvalidRequest)
        else:
            assert isinstance(result, NoCapacity)
            reachable = {p for name in names for p in CONFIG.candidates(name)}
            disjoint = all(not set(CONFIG.candidates(a)) & set(CONFIG.candidates(b))
                           for a in names for b in names if a != b)
            # When the names share no pool, failure means some name really could not be served.
            if disjoint:
                assert any(n > sum(stock[p] for p in CONFIG.candidates(name)) for name, n in counts)
            assert total > 0 and reachable
        return

    assert "nope" not in names and total > 0
    got: dict[str, int] = {}
    for requested, pool, _host in result.vms:
        assert pool in CONFIG.candidates(requested)
        got[requested] = got.get(requested, 0) + 1
    assert got == {name: n for name, n in counts if n}
    hosts = result.hosts()
    assert len(hosts) == len(set(hosts)) == total
    for pool in POOLS:
        taken = set(result.by_pool().get(pool, []))
        assert after[pool][0] == before[pool][0] - taken
        assert after[pool][1] == before[pool][1] | taken
    assert list(result.by_pool()) == list(dict.fromkeys(p for _, p, _ in result.vms))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stock=stocks, counts=requests.filter(lambda c: "nope" not in {n for n, _ in c}))
def test_serving_is_never_worse_than_the_disjoint_bound(redis_url: str, sync_redis: redis.Redis,
                                                        stock: dict[str, int], counts: list[tuple[str, int]]) -> None:
    """If every name could be served from pools no other name uses, the request must succeed."""
    sync_redis.flushall()
    for pool, n in stock.items():
        if n:
            sync_redis.sadd(K.ready(pool), *(f"{pool}-{i}" for i in range(n)))
    names = [name for name, n in counts if n]
    pools = [set(CONFIG.candidates(n)) for n in names]
    disjoint = all(not a & b for i, a in enumerate(pools) for b in pools[i + 1:])
    enough = all(n <= sum(stock[p] for p in CONFIG.candidates(name)) for name, n in counts)
    result = asyncio.run(_take(redis_url, tuple(counts)))
    if names and disjoint and enough:
        assert isinstance(result, Allocation)
