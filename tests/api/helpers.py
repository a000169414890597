"""Redis set-up and response checks shared by the API tests (the original's spec helpers)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import redis

from vmpooler_core.keys import Keys

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
