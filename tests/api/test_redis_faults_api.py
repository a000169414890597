"""Redis there but unwilling (issue 20): NOREPLICAS, READONLY, OOM, LOADING, BUSY and MASTERDOWN, each
produced by a real redis-server, are 503 JSON answers with `code: backend_unavailable` and a reason,
never a 500; /healthcheck says why; and the API logs one line per change of cause. (The manager's side:
tests/manager/test_redis_refusals.py.)"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.api.conftest import TestClient
from tests.api.helpers import ready, running
from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app

K = Keys()


def api(url: str) -> TestClient:
    config = make_config(f"redis: {{url: '{url}', socket_timeout: 1}}\n"
                         "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")
    return TestClient(create_app(config, metrics=NullMetrics()))


def until(predicate: Callable[[], object], seconds: float = 10.0) -> object:
    deadline = time.monotonic() + seconds
    while True:
        found = predicate()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def refused(client: TestClient, method: str, path: str, reason: str) -> dict[str, object]:
    response = client.request(method, path, json={"lifetime": 2} if method == "PUT" else None)
    assert response.status_code == 503, (method, path, response.status_code, response.text)
    body: dict[str, object] = response.json()
    assert body["ok"] is False and body["code"] == "backend_unavailable", body
    assert str(body["reason"]).startswith(reason), body
    return body


@pytest.fixture
def server() -> Iterator[RedisServer]:
    started = RedisServer().start()
    yield started
    started.stop()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port, decode_responses=True)
    ready(client, "pool1", "vm1")
    yield client
    client.close()


def test_noreplicas(server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    admin.config_set("min-replicas-to-write", 1)  # and no replica connected
    reason = "redis refuses writes: fewer replicas are connected than its min-replicas-to-write"
    with caplog.at_level(logging.WARNING, logger="vmpooler.api"), api(server.url) as client:
        for _ in range(5):
            refused(client, "POST", "/api/v1/vm/pool1", reason)
        refused(client, "GET", "/healthcheck", reason)
        assert client.get("/api/v1/status").status_code == 200  # reading is still fine
        admin.config_set("min-replicas-to-write", 0)
        assert client.post("/api/v1/vm/pool1").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("redis unavailable")]
    assert len(lines) == 1 and lines[0].startswith(f"redis unavailable: {reason} [NOREPLICAS "), lines


def test_readonly_replica(server: RedisServer, admin: redis.Redis) -> None:
    replica = RedisServer().start()
    try:
        direct = redis.Redis(port=replica.port, decode_responses=True)
        direct.replicaof("127.0.0.1", server.port)
        until(lambda: direct.smembers(K.ready("pool1")) == {"vm1"})
        with api(replica.url) as client:
            refused(client, "POST", "/api/v1/vm/pool1", "redis is a read-only replica: point redis at the primary, "
                                                        "or use redis.sentinels")
            refused(client, "GET", "/healthcheck", "redis is a read-only replica")
        direct.close()
    finally:
        replica.stop()


def test_out_of_memory(server: RedisServer, admin: redis.Redis) -> None:
    running(admin, "pool1", "vm2")
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        with api(server.url) as client:
            reason = "redis is out of memory (maxmemory) and refuses writes: raise its maxmemory"
            refused(client, "PUT", "/api/v1/vm/vm2", reason)  # changing a VM is an HSET, refused when full
            refused(client, "GET", "/healthcheck", reason)
    finally:
        admin.config_set("maxmemory", 0)


def test_loading(tmp_path: Path) -> None:
    first = RedisServer(directory=str(tmp_path)).start()
    writer = redis.Redis(port=first.port)
    writer.mset({f"filler{i}": os.urandom(1024).hex() for i in range(300)})  # not compressible: 600 KB
    writer.save()
    writer.close()
    first.stop()
    # 300 keys at 50 ms each: the data takes 15 s to load, and every command meanwhile is LOADING. (Redis
    # answers clients between keys only every so many bytes loaded: every key, here.)
    loading = RedisServer(port=first.port, directory=str(tmp_path), extra=[
        "--key-load-delay", "50000", "--loading-process-events-interval-bytes", "1024"]).start(wait=False)
    try:
        with api(loading.url) as client:
            until(lambda: "loading" in client.get("/api/v1/status").json().get("reason", ""))
            refused(client, "GET", "/api/v1/status", "redis is loading its data set into memory (after a restart)")
            refused(client, "GET", "/healthcheck", "redis is loading its data set")
    finally:
        loading.stop()


def _raw(port: int, command: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(command)
    return sock


def test_busy(tmp_path: Path) -> None:
    server = RedisServer(extra=["--busy-reply-threshold", "50"]).start()
    admin = redis.Redis(port=server.port, decode_responses=True)
    ready(admin, "pool1", "vm1")
    admin.close()
    try:
        with api(server.url) as client:
            assert client.get("/api/v1/status").status_code == 200
            spinning = _raw(server.port, b"EVAL \"while true do end\" 0\r\n")  # a script that never ends
            try:
                until(lambda: client.get("/api/v1/status").status_code == 503)
                refused(client, "POST", "/api/v1/vm/pool1", "redis is busy running a script")
                refused(client, "GET", "/healthcheck", "redis is busy running a script")
            finally:
                killer = _raw(server.port, b"SCRIPT KILL\r\n")
                killer.recv(64)
                killer.close()
                spinning.recv(256)  # the killed script's error
                spinning.close()
            until(lambda: client.post("/api/v1/vm/pool1").status_code == 200)
    finally:
        server.stop()


def test_masterdown(server: RedisServer, admin: redis.Redis) -> None:
    admin.config_set("replica-serve-stale-data", "no")
    admin.replicaof("127.0.0.1", free_port())  # a primary that is not there
    with api(server.url) as client:
        refused(client, "GET", "/api/v1/status", "redis is a replica cut off from its primary (MASTERDOWN)")
        refused(client, "POST", "/api/v1/vm/pool1", "redis is a replica cut off from its primary")
        refused(client, "GET", "/healthcheck", "redis is a replica cut off from its primary")


def test_the_api_logs_each_change_of_cause_once(server: RedisServer, admin: redis.Redis,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vmpooler.api"), api(server.url) as client:
        admin.config_set("min-replicas-to-write", 1)
        for _ in range(3):
            refused(client, "POST", "/api/v1/vm/pool1", "redis refuses writes")
        admin.config_set("min-replicas-to-write", 0)
        admin.config_set("replica-serve-stale-data", "no")
        admin.replicaof("127.0.0.1", free_port())
        for _ in range(3):
            refused(client, "POST", "/api/v1/vm/pool1", "redis is a replica cut off")
    kinds = [r.getMessage().split(" [")[0] for r in caplog.records if r.getMessage().startswith("redis unavailable")]
    assert kinds == ["redis unavailable: redis refuses writes: fewer replicas are connected than its "
                     "min-replicas-to-write",
                     "redis unavailable: redis is a replica cut off from its primary (MASTERDOWN)"], kinds


def test_a_bug_is_still_a_500(server: RedisServer, admin: redis.Redis) -> None:
    """Only Redis's refusals are 503s: a reply that means our code is wrong (here: a key of the wrong type
    where a script expects a set) stays a 500 with a request id, as every bug is."""
    admin.delete(K.ready("pool1"))
    admin.set(K.ready("pool1"), "not a set")
    with api(server.url) as client:
        response = client.post("/api/v1/vm/pool1")
    assert response.status_code == 500 and response.json()["code"] == "internal_error", response.text
