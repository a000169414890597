"""What the manager writes down: each VM's history entries (clone, ready, completed, destroyed), and log
lines that tell the truth: no "pool empty" while a pool fills for the first time, a line while a pool
waits for the lease of a manager that stopped renewing it, and a line while a stop waits for clones."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import redis
from redis import asyncio as aioredis

from tests.manager.conftest import MakeManager, dummy_config, passes, states
from vmpooler_core import audit
from vmpooler_core.checkout import Checkout
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.request import from_path

K = Keys()
ONE = "  - name: pool1\n    size: 2\n"


def messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "vmpooler.manager" and (level is None or r.levelno == level)]


async def test_a_vms_life_is_in_its_history(make_manager: MakeManager, sync_redis: redis.Redis,
                                            aredis: aioredis.Redis) -> None:
    config = dummy_config("  - name: pool1\n    size: 1\n")
    manager = await make_manager(config)
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 1)
    checkout = Checkout(config, Inventory(aredis), NullMetrics())
    host = (await checkout.take(from_path("pool1"), caller=audit.Caller("10.0.0.5", "r1"))).hosts()[0]
    await checkout.give_back(host, caller=audit.Caller("10.0.0.5", "r2"))
    await passes(manager, lambda: bool(sync_redis.hget(K.vm(host), "destroy")))
    entries = [audit.read_entry(str(raw)) for raw in sync_redis.lrange(K.history(host), 0, -1)]
    assert [(e["event"], e.get("manager") or e.get("client")) for e in entries] == [
        ("clone", manager.id), ("ready", manager.id), ("checkout", "10.0.0.5"), ("return", "10.0.0.5"),
        ("destroyed", manager.id)]
    assert entries[0]["detail"] == "template pool1" and entries[0]["at"] == sync_redis.hget(K.vm(host), "clone")
    assert 0 < sync_redis.ttl(K.history(host)) <= 168 * 3600  # expires with the VM's hash


async def test_a_vm_retired_by_the_manager_says_why(make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    manager = await make_manager(dummy_config(ONE))
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2)
    smaller = await make_manager(dummy_config("  - name: pool1\n    size: 1\n"))
    await manager.shutdown()
    await smaller.run_once()
    (gone,) = states(sync_redis, "pool1")["completed"]  # the surplus VM, destroyed on a later pass
    last = audit.read_entry(str(sync_redis.lrange(K.history(gone), -1, -1)[0]))
    assert (last["event"], last["manager"], last["detail"]) == ("completed", smaller.id, "pool size is 1")


async def test_the_first_fill_is_not_an_empty_pool(make_manager: MakeManager, sync_redis: redis.Redis,
                                                   aredis: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    config = dummy_config(ONE)
    manager = await make_manager(config)
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2)
    assert sync_redis.exists(K.empty("pool1")) == 0  # the marker was set and cleared as ever...
    assert not any("empty" in line or "refilled" in line for line in messages(caplog))  # ...in silence
    assert messages(caplog).count("pool filled pool=pool1 ready=2") == 1
    # Once it has been full, an empty pool is news.
    await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1+pool1"))
    await manager.run_once()
    assert messages(caplog, logging.WARNING) == ["pool empty pool=pool1: no ready VMs"]
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2)
    assert any(line.startswith("pool refilled pool=pool1 ready=") for line in messages(caplog))
    assert messages(caplog).count("pool filled pool=pool1 ready=2") == 1


async def test_waiting_for_a_lease_its_holder_stopped_renewing(make_manager: MakeManager, sync_redis: redis.Redis,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    manager = await make_manager(dummy_config(ONE + "  - name: pool2\n    size: 1\n", manager_lease_seconds=10))
    sync_redis.set(K.lease("pool1"), "live-manager", px=9_500)  # renewed just now
    sync_redis.set(K.lease("pool2"), "dead-manager", px=3_000)  # last renewed 7 s ago: missed two renewals
    for _ in range(3):
        report = await manager.run_once()
        assert sorted(report.elsewhere) == ["pool1", "pool2"]
    waiting = [line for line in messages(caplog, logging.WARNING) if line.startswith("waiting for a lease")]
    assert len(waiting) == 1, waiting  # once, not every pass
    found = re.fullmatch(r"waiting for a lease pool=pool2 holder=dead-manager: it has not been renewed for (\d+)s "
                         r"\(that manager stopped or lost Redis\); taken over in (\d+)s", waiting[0])
    assert found, waiting[0]
    since, left = int(found.group(1)), int(found.group(2))
    assert 7 <= since <= 10 and 0 <= left <= 3 and 9 <= since + left <= 11, waiting[0]
    # Taken over when it expires: the usual line, and a new holder that stops renewing is news again.
    sync_redis.delete(K.lease("pool2"))
    assert "pool2" in (await manager.run_once()).worked
    assert f"lease taken pool=pool2 manager={manager.id}" in messages(caplog)


async def test_a_stop_says_it_waits_for_clones(make_manager: MakeManager, sync_redis: redis.Redis,
                                               caplog: pytest.LogCaptureFixture) -> None:
    manager = await make_manager(dummy_config(ONE, dummy="clone_time: 0.5\n    boot_time: 0"), stop_grace=5.0)
    assert (await manager.run_once()).clones == 2
    # Both must hold a slot before the stop: one still asking Redis for its slot is dropped, by design.
    for _ in range(500):
        if len(manager.cloner.inflight) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(manager.cloner.inflight) == 2, manager.cloner.inflight
    await manager.shutdown()
    assert "stopping: waiting up to 5s for 2 clone(s) to finish" in messages(caplog)
    assert len(states(sync_redis, "pool1")["pending"]) == 2  # both finished and were recorded
    assert sync_redis.hlen(K.dummy_folder("dummy", "pool1")) == 2
    assert not any("still running" in line for line in messages(caplog))
