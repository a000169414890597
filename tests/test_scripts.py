"""The Lua scripts' runners, against a real Redis: `LaneScripts` (the fast path: EVALSHA on connections it
keeps) and `ClientScripts` (the stock path: redis-py's public calls) honour the same contract; the lanes
are `LaneScripts`' own. `for_client` picks one through the "scripts" seam."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis
from redis import asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.redis_server import free_port
from vmpooler_core import scripts
from vmpooler_core.keys import Keys
from vmpooler_core.seams import Seams

K = Keys()
Make = Callable[..., scripts.Scripts]


def _lanes(client: aioredis.Redis, lanes: int | None = None) -> scripts.Scripts:
    return scripts.LaneScripts(client, lanes)


def _client(client: aioredis.Redis, lanes: int | None = None) -> scripts.Scripts:
    return scripts.ClientScripts(client)  # no lanes: redis-py's pool hands out its connections


@pytest.fixture(params=[_lanes, _client], ids=["lanes", "client"])
def make(request: pytest.FixtureRequest) -> Make:
    """Each runner, for the tests of the contract they share."""
    maker: Make = request.param
    return maker


async def test_runs_a_script_and_loads_it_again_after_a_script_flush(make: Make, aredis: aioredis.Redis,
                                                                     sync_redis: redis.Redis) -> None:
    runner = make(aredis)
    sync_redis.sadd(K.ready("p"), "vm1")
    assert await runner.run("status", [K.prefix, "p"]) is not None
    sync_redis.script_flush()  # what a Redis restart does to the script cache
    assert not sync_redis.script_exists(scripts.digest("status"))[0]
    assert await runner.run("status", [K.prefix, "p"]) is not None
    assert sync_redis.script_exists(scripts.digest("status"))[0], "EVAL cached it again"


async def test_a_script_error_is_raised_and_the_connection_stays_usable(make: Make, aredis: aioredis.Redis) -> None:
    runner = make(aredis, lanes=1)
    with pytest.raises(ResponseError):
        await runner.run("move", [])  # no arguments: the script fails inside Redis
    assert await runner.run("forget", [K.prefix, "p", "nosuchvm", "", 60]) == 0


async def test_a_call_cancelled_mid_command_leaves_no_reply_behind(make: Make, aredis: aioredis.Redis,
                                                                    sync_redis: redis.Redis) -> None:
    """A call cancelled while its command is with Redis must not leave the reply on the connection for
    the next call to read as its own."""
    runner = make(aredis, lanes=1)
    assert await runner.run("forget", [K.prefix, "p", "a", "", 60]) == 0  # its one connection is open
    sync_redis.sadd(K.ready("p"), "a")
    # Redis holds scripts (they may write) until unpaused; reads such as CLIENT UNPAUSE still run.
    sync_redis.client_pause(10_000, all=False)
    call = asyncio.create_task(runner.run("forget", [K.prefix, "p", "a", "", 60]))
    await asyncio.sleep(0.1)  # only event-loop turns stand between the task and its command being sent
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    sync_redis.client_unpause()
    # Were the cancelled call's reply (1: "a" left the ready set) still on the connection, the next call
    # would read it; "b" is in no set, so this call's own reply is 0.
    assert await runner.run("forget", [K.prefix, "p", "b", "", 60]) == 0


async def test_at_most_lanes_connections_and_waiting_calls_get_one(aredis: aioredis.Redis,
                                                                    sync_redis: redis.Redis) -> None:
    runner = scripts.LaneScripts(aredis, lanes=2)
    before = _clients(sync_redis)
    results = await asyncio.gather(*(runner.run("forget", [K.prefix, "p", f"vm{n}", "", 60]) for n in range(40)))
    assert results == [0] * 40
    assert _clients(sync_redis) - before <= 2


async def test_a_dropped_connection_is_retried_by_the_clients_policy(make: Make, redis_url: str,
                                                                      sync_redis: redis.Redis) -> None:
    client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 1,
                                                            supported_errors=(RedisConnectionError,)))
    runner = make(client, lanes=1)
    try:
        assert await runner.run("forget", [K.prefix, "p", "x", "", 60]) == 0
        sync_redis.client_kill_filter(_type="normal", skipme=True)  # as a Redis restart would
        assert await runner.run("forget", [K.prefix, "p", "x", "", 60]) == 0
    finally:
        await client.aclose()


async def test_closing_the_client_closes_the_scripts_connections(make: Make, redis_url: str,
                                                                 sync_redis: redis.Redis) -> None:
    client = aioredis.Redis.from_url(redis_url)
    runner = make(client, lanes=3)
    before = _clients(sync_redis)
    await asyncio.gather(*(runner.run("forget", [K.prefix, "p", "x", "", 60]) for _ in range(3)))
    assert _clients(sync_redis) > before
    await client.aclose()
    for _ in range(100):  # the server sees the close a moment later
        if _clients(sync_redis) == before:
            break
        await asyncio.sleep(0.01)
    assert _clients(sync_redis) == before, "no connection left open (and no ResourceWarning)"


def _clients(sync_redis: redis.Redis) -> int:
    return len([c for c in sync_redis.client_list() if c.get("cmd") != "client|list"])



async def test_a_call_waiting_for_a_lane_is_not_stranded_when_the_lane_fails_to_connect() -> None:
    """The one lane's first connect fails (nothing listens): the call queued behind it takes the lane
    and fails the same way, rather than waiting for a connection that never comes."""
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    runner = scripts.LaneScripts(client, lanes=1)
    try:
        calls = [runner.run("forget", [K.prefix, "p", "x", "", 60]) for _ in range(3)]
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
    finally:
        await client.aclose()


async def test_the_seam_picks_the_lanes_unless_the_stock_path_is_asked_for(aredis: aioredis.Redis) -> None:
    assert scripts.lanes_unsupported(aredis) is None, "the versions tested here carry the fast path"
    assert isinstance(scripts.for_client(aredis, Seams()), scripts.LaneScripts)
    assert isinstance(scripts.for_client(aredis, Seams.from_env({"VMPOOLER_STOCK": "scripts"})),
                      scripts.ClientScripts)


class _ChangedConnection(Connection):
    """A redis-py release whose connections no longer take `disconnect(nowait=...)`, as the lanes call it."""

    async def disconnect(self, error: Exception | None = None) -> None:  # type: ignore[override]
        await super().disconnect(error=error)


async def test_a_changed_redis_py_is_detected_and_the_stock_path_taken(redis_url: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, connection_class=_ChangedConnection)
    try:
        reason = scripts.lanes_unsupported(client)
        assert reason is not None and "disconnect" in reason
        with caplog.at_level(logging.INFO, logger="vmpooler.seams"):
            runner = scripts.for_client(client, Seams())
        assert isinstance(runner, scripts.ClientScripts)
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.WARNING, f"seam scripts: stock path, because the installed library changed: {reason}")]
        assert await runner.run("forget", [K.prefix, "p", "x", "", 60]) == 0, "and the stock path works with it"
    finally:
        await client.aclose()
