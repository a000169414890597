"""Redis there but refusing the manager (issue 20): an error reply that is not a bug (NOREPLICAS here, a
plain error reply; an ACL refusal in tests/test_redis_acl.py) is an outage like Redis being down: one
log line, no traceback, backoff, recovery by itself; and the stop completes whatever Redis answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import StatsdNames
from tests.manager.conftest import dummy_config, on_redis
from tests.manager.test_outages import lines, wait_for
from tests.redis_server import RedisServer
from vmpooler_core.config import Config
from vmpooler_core.keys import Keys
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers

K = Keys()
NOREPLICAS = ("redis unavailable: redis refuses writes: fewer replicas are connected than its min-replicas-to-write "
              "[NOREPLICAS Not enough good replicas to write.")


@asynccontextmanager
async def manager_on(server: RedisServer, config: Config) -> AsyncIterator[Manager]:
    client = aioredis.Redis.from_url(server.url, decode_responses=True, socket_timeout=1)
    providers = build_providers(config)
    try:
        yield Manager(config, client, providers, StatsdNames(), stop_grace=1)
    finally:
        close_providers(providers)
        await client.aclose()


async def test_the_manager_backs_off_from_a_refusing_redis_and_recovers(redis_server: RedisServer,
                                                                        sync_redis: redis.Redis,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    sync_redis.config_set("min-replicas-to-write", 1)  # and no replica connected: every write is refused
    config = on_redis(dummy_config("  - name: p\n    size: 2\n"), redis_server.url)
    try:
        async with manager_on(redis_server, config) as manager:
            stop = asyncio.Event()
            loop = asyncio.create_task(manager.run_forever(stop))
            await wait_for(lambda: manager._redis_outage.failures >= 5 or loop.done())  # several passes
            assert not loop.done()
            refused = lines(caplog, "unavailable")
            assert len(refused) == 1 and refused[0].startswith(NOREPLICAS), refused
            assert not [r for r in caplog.records if r.exc_info], "no traceback"
            sync_redis.config_set("min-replicas-to-write", 0)
            await wait_for(lambda: sync_redis.scard(K.ready("p")) == 2)
            assert len(lines(caplog, "redis available again")) == 1
            stop.set()
            await asyncio.wait_for(loop, 10)
    finally:
        sync_redis.config_set("min-replicas-to-write", 0)


async def test_the_stop_completes_when_redis_refuses_the_lease_release(redis_server: RedisServer,
                                                                       sync_redis: redis.Redis,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Before issue 20 the refusal escaped the stop, and `vmpoolerd` exited 1 on SIGTERM."""
    config = on_redis(dummy_config("  - name: p\n    size: 1\n"), redis_server.url)
    try:
        async with manager_on(redis_server, config) as manager:
            await manager.run_once()
            sync_redis.config_set("min-replicas-to-write", 1)
            with caplog.at_level(logging.WARNING, logger="vmpooler.manager"):
                await manager.shutdown()  # must not raise
        assert lines(caplog, "leases not released (they expire by themselves): redis refuses writes")
    finally:
        sync_redis.config_set("min-replicas-to-write", 0)
