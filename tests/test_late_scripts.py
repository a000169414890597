"""The deadline of a request's changes, on both script runners against a real Redis: inside
`ChangesUntil` the scripts that change state (checkout, return, write) carry the deadline on Redis's clock
and refuse, doing nothing, when Redis reaches them after it (`Late`); outside one they run as ever
(vmpooler_core/server_clock.py, lua/deadline.lua). The API's side: tests/api/test_late_changes.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from tests.api.helpers import everything
from vmpooler_core import scripts
from vmpooler_core.keys import Keys
from vmpooler_core.server_clock import ChangesUntil, Late

K = Keys()
Make = Callable[..., scripts.Scripts]
STAMP = "2026-01-01 00:00:00 +0000"
# Each deadlined script with arguments that would change something (the runner puts the deadline second).
CHANGES: dict[str, list[Any]] = {
    "checkout": [K.prefix, STAMP, "", "", "-", "-", 1, "p", 1, 1, "p"],
    "return": [K.prefix, "r1", "", STAMP, "-", "-"],
    "write": [K.prefix, 4, "HSET", K.vm("r1"), "lifetime", "3"]}


@pytest.fixture(params=[scripts.LaneScripts, scripts.ClientScripts], ids=["lanes", "client"])
def make(request: pytest.FixtureRequest) -> Make:
    maker: Make = request.param
    return maker


@pytest.fixture
def vms(sync_redis: redis.Redis) -> redis.Redis:
    """A ready VM in pool p, a running one (r1) in it."""
    sync_redis.sadd(K.ready("p"), "v1")
    sync_redis.hset(K.vm("v1"), mapping={"pool": "p", "template": "p"})
    sync_redis.sadd(K.running("p"), "r1")
    sync_redis.hset(K.vm("r1"), mapping={"pool": "p", "template": "p", "checkout": STAMP})
    return sync_redis


def _time_calls(r: redis.Redis) -> int:
    """TIME calls so far, from the client and from inside scripts alike."""
    return int(r.info("commandstats").get("cmdstat_time", {}).get("calls", 0))


def _evalsha_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("name", sorted(CHANGES))
async def test_a_change_reached_after_its_deadline_does_nothing(make: Make, aredis: aioredis.Redis,
                                                                 vms: redis.Redis, name: str) -> None:
    runner = make(aredis)
    before = everything(vms)
    with ChangesUntil(asyncio.get_running_loop().time() - 0.001), pytest.raises(Late) as late:
        await runner.run(name, CHANGES[name])
    assert everything(vms) == before, "nothing changed, not even the fence's record"
    assert "after its deadline" in str(late.value)
    # In time, the same change is made.
    with ChangesUntil(asyncio.get_running_loop().time() + 5):
        reply = await runner.run(name, CHANGES[name])
    assert reply and everything(vms) != before


async def test_the_deadline_sent_is_the_requests_on_redis_clock(make: Make, aredis: aioredis.Redis,
                                                                sync_redis: redis.Redis) -> None:
    runner = make(aredis)
    loop = asyncio.get_running_loop()
    seconds, micros = sync_redis.time()
    start = seconds + micros / 1e6
    with ChangesUntil(loop.time() + 2.0):
        sent = int(await runner.clock.deadline()) / 1e6
    seconds, micros = sync_redis.time()
    end = seconds + micros / 1e6
    # Between Redis's clock at the start plus 2 s (less the reading's error: it errs early) and at the end.
    assert start + 2.0 - 0.05 <= sent <= end + 2.0, (start, sent, end)
    assert await runner.clock.deadline() == "", "no deadline outside a request"


async def test_redis_clock_is_read_once_not_per_request_and_again_after_a_refusal(
        make: Make, aredis: aioredis.Redis, vms: redis.Redis) -> None:
    runner = make(aredis)
    loop = asyncio.get_running_loop()
    time_calls, evalsha_calls = _time_calls(vms), _evalsha_calls(vms)
    with ChangesUntil(loop.time() + 5):
        for _ in range(5):
            await runner.run("write", CHANGES["write"])
    scripts_run = _evalsha_calls(vms) - evalsha_calls
    assert _time_calls(vms) - time_calls == scripts_run + 1, "one reading, then each script's own TIME"
    with ChangesUntil(loop.time() - 0.001), pytest.raises(Late):
        await runner.run("write", CHANGES["write"])
    time_calls, evalsha_calls = _time_calls(vms), _evalsha_calls(vms)
    with ChangesUntil(loop.time() + 5):
        await runner.run("write", CHANGES["write"])
    assert _time_calls(vms) - time_calls == _evalsha_calls(vms) - evalsha_calls + 1, "read again after LATE"


async def test_a_change_leaves_room_for_its_confirmation_before_the_deadline(make: Make, aredis: aioredis.Redis,
                                                                            vms: redis.Redis) -> None:
    """With `durability: aof` a return is confirmed by WAITAOF, which may take WAIT_MS: a return whose
    request has less time left than that is refused, before the change, rather than answered late."""
    runner = make(aredis, durability="aof")
    before = everything(vms)
    with ChangesUntil(asyncio.get_running_loop().time() + scripts.WAIT_MS / 1000 / 2), pytest.raises(Late):
        await runner.run("return", CHANGES["return"], durable=lambda reply: True)
    assert everything(vms) == before
