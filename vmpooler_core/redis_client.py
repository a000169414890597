"""Creating Redis clients from `RedisSettings`: a URL, a host/port, or a Sentinel group.

Clients are created by the front ends (once, at start-up) and passed in; nothing here is global.
"""

from __future__ import annotations

from typing import Any, cast

from redis import asyncio as aioredis

from .config import RedisSettings


def connect(settings: RedisSettings, *, max_connections: int = 64,
            connect_timeout: float | None = None, **options: Any) -> aioredis.Redis:
    """An asyncio client that decodes replies to str. Commands time out after
    `settings.socket_timeout` seconds so a dead Redis gives an error, never a hang.

    `connect_timeout` (default: the same as `socket_timeout`) bounds only the TCP connect: an
    interactive front end wants to say "unreachable" within a few seconds even when it allows a slow
    command more time.

    `options` are redis-py client arguments that replace the defaults below, for a front end with a
    policy of its own (the API bounds each whole request instead, and retries differently)."""
    password = settings.password.reveal() if settings.password else None
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout if connect_timeout is None else connect_timeout,
        "health_check_interval": 30,
        **options,
    }
    if settings.sentinels:
        sentinel = aioredis.Sentinel(  # type: ignore[no-untyped-call]
            list(settings.sentinels), sentinel_kwargs={
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": settings.socket_timeout,
        }, password=password, db=settings.db, **common)
        assert settings.master is not None  # the loader requires it with sentinels
        return cast(aioredis.Redis, sentinel.master_for(settings.master, max_connections=max_connections))
    if settings.url:
        return aioredis.Redis.from_url(settings.url, password=password, max_connections=max_connections,
                                       **common)
    return aioredis.Redis(host=settings.server, port=settings.port, db=settings.db, password=password,
                          max_connections=max_connections, **common)
