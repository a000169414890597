"""Redis set-up and response checks shared by the API tests (the original's spec helpers)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis
from redis import asyncio as aioredis

from vmpooler_core import config_loader
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpoolerd.manager.health_report import HealthReport

K = Keys()


def ready(r: redis.Redis, pool: str, *hosts: str) -> None:
    for host in hosts:
        r.sadd(K.ready(pool), host)
        r.hset(K.vm(host), mapping={"template": pool, "pool": pool, "clone": "2016-07-25 10:00:00 +0000"})


def running(r: redis.Redis, pool: str, host: str, token: str | None = None, user: str = "jdoe") -> None:
    r.sadd(K.running(pool), host)
    r.hset(K.active(pool), host, "2016-07-25 10:00:00 +0000")
    r.hset(K.vm(host), mapping={"template": pool, "pool": pool, "checkout": "2016-07-25 10:00:00 +0000"})
    if token:
        r.hset(K.vm(host), mapping={"token:token": token, "token:user": user})


def make_token(r: redis.Redis, token: str, user: str = "jdoe", created: str = "2016-07-25 10:43:32 -0500") -> None:
    r.hset(K.token(token), mapping={"user": user, "created": created})


def members(r: redis.Redis, state: str, pool: str) -> set[str]:
    return set(r.smembers(K.state(state, pool)))  # type: ignore[arg-type]


def vm(r: redis.Redis, host: str) -> dict[str, str]:
    return dict(r.hgetall(K.vm(host)))  # type: ignore[arg-type]


def everything(r: redis.Redis) -> dict[str, Any]:
    """Every key in Redis with its type and value (`r` decoding responses), to compare before and after."""
    read = {"string": r.get, "hash": r.hgetall, "set": r.smembers, "list": lambda key: r.lrange(key, 0, -1),
            "zset": lambda key: r.zrange(key, 0, -1, withscores=True)}
    return {key: (kind, read[kind](key)) for key in r.scan_iter() if (kind := r.type(key)) in read}


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def expect_json(response: httpx.Response, ok: bool, status: int) -> Any:
    """The original's `expect_json`: JSON content type, the `ok` field and the status; plus, for
    errors, the reason this implementation adds."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["ok"] is ok, body
    if not ok:
        assert isinstance(body["reason"], str) and body["reason"]
    return body


def expect_unauthorized(response: httpx.Response) -> None:
    expect_json(response, False, 401)
    assert response.headers["www-authenticate"] == 'Basic realm="Authentication required"'


def report_health(redis_url: str, config_text: str, saw: Callable[[HealthReport], None], manager: str = "m1") -> None:
    """A manager of `config_text` that holds every pool, has seen what `saw` tells its health report and
    has just beaten its heart: its report published by the real writer (vmpoolerd/manager/health_report.py)."""
    config = config_loader.load(text=config_text, env={"VMPOOLER_REDIS_URL": redis_url}, source="test.yaml")

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            report = HealthReport(Inventory(client), manager, config)
            saw(report)
            await report.publish(pool.name for pool in config.pools)
            await client.zadd(K.heartbeats(), {manager: time.time()})
        finally:
            await client.aclose()

    asyncio.run(publish())
