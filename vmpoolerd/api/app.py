"""The application factory: `create_app(config)` -> a Starlette app serving API v1.

Clients (Redis, metrics sink, authenticator) are built once in the lifespan, or passed in by the caller
(which then owns and closes them), and handed to handlers through `app.state.services`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware

from vmpooler_core import auth, pool_records, redis_faults, scripts
from vmpooler_core.config import Config
from vmpooler_core.errors import ConfigError
from vmpooler_core.metrics import Metrics, from_settings
from vmpooler_core.redis_client import connect
from vmpoolerd.prometheus import Registry

from . import routing
from .guard import Guard
from .services import Services

log = logging.getLogger("vmpooler.api")


def api_redis(config: Config) -> aioredis.Redis:
    """The API's client, with its own policy:
    - retries: redis-py's default backs off for seconds and retries timeouts, and a retried checkout
      script whose first run did happen would take a second VM. Here: one immediate retry on a broken
      connection (a pooled connection from before a Redis restart), none on a timeout;
    - no per-read timeout and no health-check PING bookkeeping: each request has one deadline
      (endpoint.py) that covers all its Redis calls. On Python 3.11 every timer of that kind asks
      asyncio for the running loop, a getpid() system call each, several per request otherwise.
    Connecting still times out after `socket_timeout`."""
    return connect(config.redis, retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
                   socket_timeout=None, health_check_interval=0)


def default_deadline(config: Config) -> float:
    # Room for one connect attempt (it times out after socket_timeout) and then the command itself.
    return max(1.0, config.redis.socket_timeout) + 1.0


async def _probe(client: aioredis.Redis, config: Config) -> None:
    """Say at start-up when Redis is not there; requests answer 503 until it is, then recover; and when it
    cannot honour `durability` (each checkout then says why, with a 503)."""
    try:
        async with asyncio.timeout(min(2.0, default_deadline(config))):
            await client.ping()
            unsupported = await scripts.durability_unsupported(client, config.redis.durability)
    except (redis_errors.RedisError, OSError, TimeoutError) as err:
        fault = redis_faults.explain(err, config.redis)
        if fault is None or fault.kind == "unreachable":
            log.warning("redis at %s is unreachable (%s); answering 503 until it is back",
                        config.redis.describe(), type(err).__name__)
        else:  # there, but refusing us: say why, and which setting to fix
            log.warning("redis at %s: %s; answering 503 until it is fixed", config.redis.describe(), fault.logged())
        return
    if unsupported is not None:  # (preflight refuses this before the server starts, when it can ask)
        log.error("%s: each checkout and return is answered 503 until it is fixed", unsupported)


async def preflight(config: Config) -> None:
    """Before the server starts: ConfigError for a Redis that cannot honour `durability`, so that the daemon
    says so in one line and exits 78 (raised from the start-up of uvicorn, it became a traceback). A Redis
    that cannot be asked is not refused: the API answers 503 until it is there."""
    if config.redis.durability != "aof":
        return
    client = api_redis(config)
    try:
        async with asyncio.timeout(min(2.0, default_deadline(config))):
            unsupported = await scripts.durability_unsupported(client, config.redis.durability)
    except (redis_errors.RedisError, OSError, TimeoutError):
        return
    finally:
        await client.aclose()
    if unsupported is not None:
        raise ConfigError(unsupported.removeprefix("durability: "), source=config.source, key="redis.durability")


async def _recorded_pools(config: Config, client: aioredis.Redis) -> Config:
    """A configuration without pools serves the pools the managers recorded in Redis, as the original's
    API-only processes do (read once, at start)."""
    try:
        async with asyncio.timeout(default_deadline(config)):
            served = await pool_records.with_recorded_pools(config, client)
    except (redis_errors.RedisError, OSError, TimeoutError) as err:
        log.error("the configuration has no pools and those recorded in redis could not be read (%s): "
                  "serving none until restarted", type(err).__name__)
        return config
    log.info("the configuration has no pools: serving the %d recorded in redis by the managers: %s",
             len(served.pools), ", ".join(pool.name for pool in served.pools) or "none")
    return served


def create_app(config: Config, redis: aioredis.Redis | None = None, metrics: Metrics | None = None, *,
               authenticator: auth.Authenticator | None = None, deadline: float | None = None,
               prometheus: Registry | None = None) -> Starlette:
    """`prometheus`, when given, serves `/metrics` and times every request by route; the caller should
    also pass `metrics=Tee(sink, prometheus)` so checkout outcomes are counted there too."""
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis if redis is not None else api_redis(config)
        sink = metrics if metrics is not None else from_settings(config.metrics)
        checker = authenticator if authenticator is not None else auth.from_settings(config.auth)
        served = config if config.pools else await _recorded_pools(config, client)
        app.state.services = Services.build(served, client, sink, checker,
                                            deadline if deadline is not None else default_deadline(config),
                                            prometheus)
        await _probe(client, config)
        try:
            yield
        finally:
            if redis is None:
                await client.aclose()
            if metrics is None:
                sink.close()

    # Starlette's own middleware stack around the guard. (Its two outer layers never answer here: the
    # guard answers anything unexpected with a JSON 500, and the route table answers 404 and 405 itself.
    # Building the stack without them saved under 5% of a request's CPU, measured: not worth relying
    # on how Starlette builds its stack.)
    guard = Middleware(Guard, prometheus=prometheus, access_log=config.app.access_log,
                       address_header=config.rate_limits.address_header)
    return Starlette(routes=routing.routes(), middleware=[guard], lifespan=lifespan)
