"""Redis Sentinel: the core follows a failover by itself (Debian's redis-sentinel, real processes)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from vmpooler_core.checkout import Checkout
from vmpooler_core.errors import BackendUnavailable
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import CloneSpec, ProviderUnavailable
from vmpooler_core.redis_client import connect
from vmpooler_core.request import from_path
from vmpoolerd.providers import build_providers, close_providers

K = Keys()


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def sentinel_group() -> Iterator[tuple[RedisServer, RedisServer, int]]:
    binary = shutil.which("redis-sentinel")
    assert binary, "redis-sentinel is not installed: run scripts/test"
    master = RedisServer().start()
    replica = RedisServer().start()
    redis.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="vmpooler-sentinel-"))
    conf = workdir / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor vmp 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds vmp 500\nsentinel failover-timeout vmp 3000\n")
    proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: redis.Redis(port=port).sentinel_master("vmp")["num-slaves"] >= 1, 20, "sentinel sees replica")
        yield master, replica, port
    finally:
        proc.terminate()
        proc.wait(5)
        master.stop()
        replica.stop()


async def test_checkout_carries_on_after_failover(sentinel_group: tuple[RedisServer, RedisServer, int]) -> None:
    master, replica, port = sentinel_group
    cfg = make_config(f"redis:\n  sentinels: ['127.0.0.1:{port}']\n  master: vmp\n  socket_timeout: 1\n"
                      "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")
    direct = redis.Redis(port=master.port, decode_responses=True)
    direct.sadd(K.ready("pool1"), *(f"vm{i}" for i in range(10)))
    direct.close()
    client = connect(cfg.redis)
    co = Checkout(cfg, Inventory(client), NullMetrics())
    first = await co.take(from_path("pool1"))
    _wait(lambda: redis.Redis(port=replica.port).scard(K.ready("pool1")) == 9, 10, "replication")

    master.stop()  # the master dies; sentinel promotes the replica
    start = time.monotonic()
    second = None
    while second is None:
        assert time.monotonic() - start < 30, "no failover within 30 s"
        try:
            second = await co.take(from_path("pool1"))
        except (redis.RedisError, BackendUnavailable, OSError):
            time.sleep(0.2)
    assert second.hosts()[0] != first.hosts()[0]
    promoted = redis.Redis(port=replica.port, decode_responses=True)
    assert promoted.role()[0] == "master"
    assert promoted.smembers(K.running("pool1")) == {first.hosts()[0], second.hosts()[0]}
    promoted.close()
    await client.aclose()


def test_the_dummy_providers_blocking_client_follows_the_failover(
        sentinel_group: tuple[RedisServer, RedisServer, int]) -> None:
    """Providers get the Redis settings, not a client: the dummy provider's blocking client is made from
    the same Sentinel settings and finds the promoted replica by itself too."""
    master, replica, port = sentinel_group
    cfg = make_config(f"redis:\n  sentinels: ['127.0.0.1:{port}']\n  master: vmp\n  socket_timeout: 1\n"
                      "providers:\n  dummy: {clone_time: 0, boot_time: 0}\npools:\n  - {name: pool1, size: 1}\n")
    providers = build_providers(cfg)
    dummy = providers["dummy"]
    try:
        dummy.clone("pool1", CloneSpec("vm1", "template", "pool1"))
        direct = redis.Redis(port=master.port, decode_responses=True)
        assert direct.hkeys(K.dummy_folder("dummy", "pool1")) == ["vm1"], "written to the master"
        direct.close()
        _wait(lambda: redis.Redis(port=replica.port).hlen(K.dummy_folder("dummy", "pool1")) == 1, 10,
              "replication")

        master.stop()
        start = time.monotonic()
        while True:
            assert time.monotonic() - start < 30, "no failover within 30 s"
            try:
                dummy.clone("pool1", CloneSpec("vm2", "template", "pool1"))
                break
            except ProviderUnavailable:
                time.sleep(0.2)
        assert set(dummy.list_vms("pool1", None)) == {"vm1", "vm2"}
        promoted = redis.Redis(port=replica.port, decode_responses=True)
        assert promoted.role()[0] == "master"
        assert set(promoted.hkeys(K.dummy_folder("dummy", "pool1"))) == {"vm1", "vm2"}
        promoted.close()
    finally:
        close_providers(providers)
