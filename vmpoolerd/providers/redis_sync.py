"""A blocking Redis client talking to the same server as the daemon's asyncio client.

Providers are blocking (they run in the manager's thread pool), so the dummy provider, whose VMs live in
Redis, needs a synchronous client. It is derived from the asyncio client the daemon already built, so
there is one place that decides where Redis is (URL, host and port, unix socket or Sentinel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis
from redis import asyncio as aioredis
from redis.asyncio import connection as aconnection
from redis.asyncio import sentinel as asentinel
from redis.sentinel import Sentinel

# Connection settings that mean the same to both clients. The asyncio pool also carries objects of its
# own (event-loop bound helpers), which must never reach a blocking connection: hence a list, not a copy.
_COMMON = ("db", "username", "password", "socket_timeout", "socket_connect_timeout", "socket_keepalive",
           "encoding", "encoding_errors", "decode_responses", "health_check_interval", "client_name",
           "retry_on_timeout")
_TCP = ("host", "port")
_UNIX = ("path",)
_SSL = ("ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
        "ssl_min_version", "ssl_ciphers")


def _pick(kwargs: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: kwargs[name] for name in names if name in kwargs}


def sync_twin(client: aioredis.Redis, max_connections: int = 32) -> redis.Redis:
    pool = client.connection_pool
    if isinstance(pool, asentinel.SentinelConnectionPool):
        manager = pool.sentinel_manager
        found = [s.connection_pool.connection_kwargs for s in manager.sentinels]
        addresses = [(kwargs["host"], kwargs["port"]) for kwargs in found]
        untyped: Any = Sentinel  # redis-py leaves the Sentinel class unannotated
        sentinel = untyped(addresses, sentinel_kwargs=_pick(manager.sentinel_kwargs, _COMMON),
                           **_pick(manager.connection_kwargs, _COMMON))
        return cast(redis.Redis, sentinel.master_for(pool.service_name, max_connections=max_connections))
    kwargs = pool.connection_kwargs
    connection_class: type[redis.Connection] | type[redis.UnixDomainSocketConnection]
    if issubclass(pool.connection_class, aconnection.UnixDomainSocketConnection):
        connection_class, chosen = redis.UnixDomainSocketConnection, _pick(kwargs, _COMMON + _UNIX)
    elif issubclass(pool.connection_class, aconnection.SSLConnection):
        connection_class, chosen = redis.SSLConnection, _pick(kwargs, _COMMON + _TCP + _SSL)
    else:
        connection_class, chosen = redis.Connection, _pick(kwargs, _COMMON + _TCP)
    blocking_pool = redis.ConnectionPool(connection_class=connection_class, max_connections=max_connections,
                                         **chosen)
    return redis.Redis(connection_pool=blocking_pool)
