"""The asyncio and blocking clients made from the same settings reach the same Redis the same way."""

from __future__ import annotations

import pytest

from tests.redis_server import RedisServer
from vmpooler_core.config import RedisSettings
from vmpooler_core.redis_client import connect, connect_blocking

SHARED = ("host", "port", "db", "password", "socket_timeout", "socket_connect_timeout", "decode_responses",
          "health_check_interval")


@pytest.mark.parametrize("how", ["url", "host and port"])
async def test_both_clients_take_the_same_decisions(redis_server: RedisServer, redis_url: str, how: str) -> None:
    settings = (RedisSettings(url=f"redis://127.0.0.1:{redis_server.port}/2", socket_timeout=2.5) if how == "url"
                else RedisSettings(server="127.0.0.1", port=redis_server.port, db=2, socket_timeout=2.5))
    asynchronous, blocking = connect(settings), connect_blocking(settings, connect_timeout=1.0)
    try:
        mine = blocking.connection_pool.connection_kwargs
        theirs = asynchronous.connection_pool.connection_kwargs
        assert {k: mine.get(k) for k in SHARED if k != "socket_connect_timeout"} == \
               {k: theirs.get(k) for k in SHARED if k != "socket_connect_timeout"}
        assert (mine["db"], mine["socket_timeout"], mine["decode_responses"]) == (2, 2.5, True)
        assert (mine["socket_connect_timeout"], theirs["socket_connect_timeout"]) == (1.0, 2.5)
        blocking.set("written", "by the blocking client")
        assert await asynchronous.get("written") == "by the blocking client"
    finally:
        blocking.close()
        await asynchronous.aclose()
