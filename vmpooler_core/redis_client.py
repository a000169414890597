"""Creating Redis clients from `RedisSettings`: a URL, a host/port, or a Sentinel group.

Clients are created by the front ends (once, at start-up) and passed in; nothing here is global.
The asyncio client (`connect`) and the blocking one (`connect_blocking`, for code that runs in threads,
such as the providers) are made by one function from the same settings, so there is one place that
decides where Redis is and how long to wait for it.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis import asyncio as aioredis

from . import primary
from .config import RedisSettings


def _client(redis_class: type[redis.Redis] | type[aioredis.Redis], sentinel_class: Any, settings: RedisSettings,
            max_connections: int, connect_timeout: float | None, options: dict[str, Any],
            pool_class: Any = None) -> Any:
    """A client of `redis_class` (redis-py's blocking and asyncio families take the same arguments)."""
    password = settings.password.reveal() if settings.password else None
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout if connect_timeout is None else connect_timeout,
        "health_check_interval": 30,
        **options,
    }
    if settings.sentinels:
        sentinel = sentinel_class(list(settings.sentinels), sentinel_kwargs={
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": settings.socket_timeout,
        }, password=password, db=settings.db, **common)
        assert settings.master is not None  # the loader requires it with sentinels
        # The pool follows the primary through a failover (primary.py).
        return sentinel.master_for(settings.master, redis_class=redis_class, max_connections=max_connections,
                                   connection_pool_class=pool_class)
    if settings.url:
        return redis_class.from_url(settings.url, password=password, max_connections=max_connections, **common)
    return redis_class(host=settings.server, port=settings.port, db=settings.db, password=password,
                       max_connections=max_connections, **common)


def connect(settings: RedisSettings, *, max_connections: int = 64,
            connect_timeout: float | None = None, **options: Any) -> aioredis.Redis:
    """An asyncio client that decodes replies to str. Commands time out after
    `settings.socket_timeout` seconds so a dead Redis gives an error, never a hang.

    `connect_timeout` (default: the same as `socket_timeout`) bounds only the TCP connect: an
    interactive front end wants to say "unreachable" within a few seconds even when it allows a slow
    command more time.

    `options` are redis-py client arguments that replace the defaults (decode_responses, the timeouts,
    health_check_interval), for a front end with a policy of its own (the API bounds each whole request
    instead, and retries differently)."""
    return cast(aioredis.Redis, _client(aioredis.Redis, primary.Sentinels, settings, max_connections,
                                        connect_timeout, options, primary.FollowingPool))


def connect_blocking(settings: RedisSettings, *, max_connections: int = 32,
                     connect_timeout: float | None = None, **options: Any) -> redis.Redis:
    """The blocking twin of `connect`, with the same defaults and the same meaning of its arguments
    (`options` are then arguments of redis-py's blocking client: its own `Retry`, for one)."""
    return cast(redis.Redis, _client(redis.Redis, primary.BlockingSentinels, settings, max_connections,
                                     connect_timeout, options, primary.BlockingFollowingPool))
