"""The GCRA of lua/gcra.lua, through ratelimit.lua, on a real Redis. The passing of time is simulated by
moving a bucket's stored arrival time back, so every figure is exact and no test sleeps."""

from __future__ import annotations

import time

import pytest
import redis

from vmpooler_core.config import ClassLimits, Rate
from vmpooler_core.errors import RateLimited
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.ratelimit import Bucket, exceeded
from vmpooler_core.replies import Counted, Empty, NoSuchVm, OverRate

K = Keys()
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"


def bucket(limit: int = 4, period: int = 60, token: str = "", token_limit: int = 100) -> Bucket:
    return Bucket.of(K, "other", ClassLimits(Rate(token_limit, period), Rate(limit, period)), token, "10.0.0.1")


async def allowed(inventory: Inventory, b: Bucket, times: int) -> int:
    """How many of `times` requests in a row go ahead."""
    return sum([await inventory.rate_limit(b) == Counted() for _ in range(times)])


def elapse(r: redis.Redis, key: str, seconds: float) -> None:
    """As if `seconds` had passed for this bucket."""
    tat = float(r.get(key))  # type: ignore[arg-type]
    r.set(key, repr(tat - seconds * 1000), px=60_000)


async def test_a_burst_of_exactly_limit_then_refusals_that_count_nothing(
        inventory: Inventory, sync_redis: redis.Redis) -> None:
    b = bucket(limit=4)
    assert await allowed(inventory, b, 4) == 4
    stored = sync_redis.get(b.address_key)
    reply = await inventory.rate_limit(b)
    assert isinstance(reply, OverRate)
    assert sync_redis.get(b.address_key) == stored  # a refused request is not counted
    err = exceeded(reply)
    assert (err.limit, err.period) == (4, 60)
    assert 10 <= err.retry_after <= 15  # one interval (60 s / 4) until the next request
    assert abs(err.reset - (time.time() + 60)) <= 5  # the whole allowance is back a period from now
    assert 0 < sync_redis.pttl(b.address_key) <= 60_000  # an idle bucket expires when full again


async def test_no_double_rate_at_a_window_edge(inventory: Inventory, sync_redis: redis.Redis) -> None:
    # A fixed window would allow another full burst as soon as its window turned; GCRA refills one
    # request per interval, whenever the burst came.
    b = bucket(limit=4, period=60)
    assert await allowed(inventory, b, 4) == 4
    elapse(sync_redis, b.address_key, 31)  # two intervals (and a bit) later
    assert await allowed(inventory, b, 4) == 2
    elapse(sync_redis, b.address_key, 60)  # a whole period of quiet: a whole burst again, not more
    assert await allowed(inventory, b, 6) == 4


async def test_steady_rate_at_the_limit_is_never_refused(inventory: Inventory, sync_redis: redis.Redis) -> None:
    b = bucket(limit=4, period=60)
    assert await allowed(inventory, b, 4) == 4
    for _ in range(10):
        elapse(sync_redis, b.address_key, 15)  # one request per interval
        assert await allowed(inventory, b, 1) == 1


async def test_a_token_that_exists_has_its_own_bucket(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.hset(K.token(TOKEN), "user", "jdoe")
    with_token = bucket(limit=2, token=TOKEN, token_limit=3)
    assert await allowed(inventory, with_token, 5) == 3
    assert not sync_redis.exists(with_token.address_key)  # the address's bucket is untouched
    # A made-up token buys nothing: it is counted against the address.
    made_up = bucket(limit=2, token="zzzzzzzz", token_limit=3)
    assert await allowed(inventory, made_up, 5) == 2
    assert not sync_redis.exists(made_up.token_key)


async def test_limit_zero_never_limits_and_stores_nothing(inventory: Inventory, sync_redis: redis.Redis) -> None:
    b = bucket(limit=0)
    assert await allowed(inventory, b, 50) == 50
    assert not sync_redis.exists(b.address_key)


async def test_a_bucket_key_of_another_type_is_started_afresh(inventory: Inventory, sync_redis: redis.Redis) -> None:
    b = bucket(limit=2)
    sync_redis.sadd(b.address_key, "someone else's")
    assert await allowed(inventory, b, 3) == 2


async def test_a_limit_finer_than_the_clock_never_limits_nor_fails(inventory: Inventory) -> None:
    # 10^9 a minute: an interval under the resolution of an epoch in ms as a double.
    assert await allowed(inventory, bucket(limit=10**9), 50) == 50


async def test_a_failing_limiter_lets_the_request_through(inventory: Inventory) -> None:
    broken = Bucket("", 0, 0, "", 5, "not a number", K.rate_bucket("other", "address", "x"))  # type: ignore[arg-type]
    assert await allowed(inventory, broken, 10) == 10
    # ...also inside checkout.lua: the checkout itself goes on.
    assert await inventory.checkout([("pool1", 1, ["pool1"])], rate=broken) == Empty("pool1")


def test_exceeded_rounds_up_to_whole_seconds() -> None:
    err = exceeded(OverRate(3, 60000, 1, 1_700_000_000_001))
    assert isinstance(err, RateLimited)
    assert (err.retry_after, err.reset) == (1, 1_700_000_001)  # never "retry after 0 seconds"


@pytest.mark.parametrize("script", ["checkout", "return"])
async def test_the_scripts_without_rate_arguments_are_unchanged(
        inventory: Inventory, sync_redis: redis.Redis, script: str) -> None:
    # Callers that pass no bucket (the CLI's Redis backend, older callers) are never limited.
    for _ in range(30):
        if script == "checkout":
            assert await inventory.checkout([("pool1", 1, ["pool1"])]) == Empty("pool1")
        else:
            assert await inventory.return_vm("nosuchvm") == NoSuchVm()
    assert not list(sync_redis.scan_iter(K.ratelimit("*")))
