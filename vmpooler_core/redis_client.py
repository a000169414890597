"""Creating Redis clients from `RedisSettings`: a URL, a host/port, a unix socket, or a Sentinel group,
with an ACL user or a password, over TLS or not.

Clients are created by the front ends (once, at start-up) and passed in; nothing here is global.
The asyncio client (`connect`) and the blocking one (`connect_blocking`, for code that runs in threads,
such as the providers) are made by one function from the same settings, so there is one place that
decides where Redis is, how to log in and how long to wait for it.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import primary
from .config import RedisSettings, Secret


def _tls(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's TLS arguments: the server's certificate is verified, always."""
    if not settings.tls:
        return {}
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": settings.ssl_check_hostname,
            "ssl_ca_certs": settings.ssl_ca_certs, "ssl_certfile": settings.ssl_certfile,
            "ssl_keyfile": settings.ssl_keyfile}


def _secret(value: Secret | None) -> str | None:
    return value.reveal() if value is not None else None


def _retry(redis_class: type[redis.Redis] | type[aioredis.Redis]) -> Any:
    """The default retry policy: twice, quickly, on a broken connection (a timeout is not retried: the
    caller's time is bounded by `socket_timeout`). redis-py's own default (since 6) backs off for up to
    10 s between tries, and its health check's PING retries inside each try: refused credentials (NOAUTH,
    which no retry can fix) took 45 s to be reported, where this takes about a second."""
    retry_class = AsyncRetry if redis_class is aioredis.Redis else Retry
    return retry_class(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.ConnectionError,))


def _client(redis_class: type[redis.Redis] | type[aioredis.Redis], sentinel_class: Any, settings: RedisSettings,
            max_connections: int, connect_timeout: float | None, options: dict[str, Any],
            pool_class: Any = None) -> Any:
    """A client of `redis_class` (redis-py's blocking and asyncio families take the same arguments)."""
    common: dict[str, Any] = {
        "retry": _retry(redis_class),
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout if connect_timeout is None else connect_timeout,
        "health_check_interval": 30,
        "username": settings.username,
        "password": _secret(settings.password),
        **_tls(settings),
        **options,
    }
    if settings.sentinels:
        sentinel = sentinel_class(list(settings.sentinels), sentinel_kwargs={
            "retry": _retry(redis_class),
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": common["socket_connect_timeout"],
            "username": settings.sentinel_username,
            "password": _secret(settings.sentinel_password),
            **({"ssl": True, **_tls(settings)} if settings.ssl else {}),
        }, db=settings.db, ssl=settings.ssl, **common)
        assert settings.master is not None  # the loader requires it with sentinels
        # The pool follows the primary through a failover (primary.py).
        return sentinel.master_for(settings.master, redis_class=redis_class, max_connections=max_connections,
                                   connection_pool_class=pool_class)
    if settings.url:
        # What the url says wins over these arguments (redis-py's rule), its password too; the loader
        # has made `db` agree with the url's.
        return redis_class.from_url(settings.url, db=settings.db, max_connections=max_connections, **common)
    if settings.unix_socket:
        return redis_class(unix_socket_path=settings.unix_socket, db=settings.db, max_connections=max_connections,
                           **common)
    return redis_class(host=settings.server, port=settings.port, db=settings.db, ssl=settings.ssl,
                       max_connections=max_connections, **common)


def connect(settings: RedisSettings, *, max_connections: int = 64,
            connect_timeout: float | None = None, **options: Any) -> aioredis.Redis:
    """An asyncio client that decodes replies to str. Commands time out after
    `settings.socket_timeout` seconds so a dead Redis gives an error, never a hang.

    `connect_timeout` (default: the same as `socket_timeout`) bounds only the TCP connect: an
    interactive front end wants to say "unreachable" within a few seconds even when it allows a slow
    command more time.

    `options` are redis-py client arguments that replace the defaults (decode_responses, the timeouts,
    health_check_interval, retry), for a front end with a policy of its own (the API bounds each whole request
    instead, and retries differently)."""
    return cast(aioredis.Redis, _client(aioredis.Redis, primary.Sentinels, settings, max_connections,
                                        connect_timeout, options, primary.FollowingPool))


def connect_blocking(settings: RedisSettings, *, max_connections: int = 32,
                     connect_timeout: float | None = None, **options: Any) -> redis.Redis:
    """The blocking twin of `connect`, with the same defaults and the same meaning of its arguments
    (`options` are then arguments of redis-py's blocking client: its own `Retry`, for one)."""
    return cast(redis.Redis, _client(redis.Redis, primary.BlockingSentinels, settings, max_connections,
                                     connect_timeout, options, primary.BlockingFollowingPool))
