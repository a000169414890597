"""Issue 15: pools sized to demand, in a real manager on the dummy provider and a real Redis. Demand is
counted on Redis's clock, so these tests use short buckets (0.1 s) and a short window (2 s), and real
checkouts (vmpooler_core.checkout, the API's own path)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import StatsdNames, make_config
from tests.manager.conftest import FakeClock, MakeManager, dummy_config, passes, states
from tests.manager.procs import FillWatch, ManagerProcess, process_config, wait_until
from tests.processes import STARTUP_SECONDS
from vmpooler_core import demand, status
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config, DemandSettings
from vmpooler_core.demand import Target
from vmpooler_core.errors import NoCapacity
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.pool_settings import PoolSettings
from vmpooler_core.request import CheckoutRequest
from vmpoolerd.manager import Manager, lifecycle
from vmpoolerd.prometheus import Registry

K = Keys()
WINDOW = 2.0  # seconds


def sized(pools: str, dummy: str = "clone_time: 0\n    boot_time: 0", **app: object) -> Config:
    """`dummy_config` with demand counted in buckets of 0.1 s over a window of WINDOW seconds."""
    return dataclasses.replace(dummy_config(pools, dummy=dummy, **app),
                               demand=DemandSettings(bucket_seconds=0.1, window_seconds=WINDOW))


def target(sync_redis: redis.Redis, pool: str = "pool1") -> Target:
    found = Target.from_json(sync_redis.hget(K.sizing(), pool))
    assert found is not None, f"no target recorded for {pool}"
    return found


async def ask(checkout: Checkout, count: int, pool: str = "pool1") -> list[str]:
    """`count` checkouts of one VM each, as clients would make them; the hosts handed out."""
    hosts = []
    for _ in range(count):
        try:
            hosts += (await checkout.take(CheckoutRequest(((pool, 1),)))).hosts()
        except NoCapacity:
            pass
    return hosts


def changes(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The target sizes logged, in order; each change is logged once: every line names the size before."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pool target size now")]
    sizes = [int(line.split()[4]) for line in lines]
    for before, (size, line) in zip([None, *sizes], zip(sizes, lines, strict=True), strict=False):
        assert size != before and (f"(was {before})" in line if before is not None else "(was" not in line), lines
    return sizes


def ready(sync_redis: redis.Redis, pool: str = "pool1") -> set[str]:
    return states(sync_redis, pool)["ready"]


async def quiet(manager: Manager, sync_redis: redis.Redis, pool: str = "pool1") -> None:
    """Passes (real time: the demand window must slide past) until the pool is back at its floor."""
    deadline = time.monotonic() + WINDOW + 3
    while target(sync_redis, pool).limit != "floor" or len(ready(sync_redis, pool)) != target(sync_redis, pool).size:
        assert time.monotonic() < deadline, "the target did not fall back to the floor"
        await manager.run_once()
        await manager.drain()
        await asyncio.sleep(0.1)


POOL = """
  - name: pool1
    size: 1
    max_size: 6
"""


async def test_a_rush_grows_the_pool_and_quiet_shrinks_it_to_its_floor_oldest_first(
        make_manager: MakeManager, inventory: Inventory, sync_redis: redis.Redis, aredis: aioredis.Redis,
        clock: FakeClock, metrics: StatsdNames, caplog: pytest.LogCaptureFixture) -> None:
    config = sized(POOL)
    manager = await make_manager(config)
    await passes(manager, lambda: len(ready(sync_redis)) == 1)
    assert target(sync_redis).size == 1 and target(sync_redis).limit == "floor"
    checkout = Checkout(config, inventory, NullMetrics())
    held = await ask(checkout, 4)  # one served, three refused: four VMs wanted within a blink
    assert len(held) == 1
    await passes(manager, lambda: target(sync_redis).size >= 4 and len(ready(sync_redis)) == target(sync_redis).size,
                 limit=5)
    grown = target(sync_redis)
    assert grown.size <= 6 and grown.limit in ("demand", "max_size") and grown.peak == 4
    assert metrics.last("gauge", "target.pool1") == grown.size
    doc = await status.status(config, inventory)
    assert doc["pools"]["pool1"]["target"]["size"] == grown.size and doc["pools"]["pool1"]["max"] == 1
    assert "up to 4 within one refill" in doc["pools"]["pool1"]["target"]["why"]
    v3 = await status.status_v3(config, inventory, ["pools"])
    assert v3["pools"]["pool1"]["target"] == doc["pools"]["pool1"]["target"]
    scraped = (await Registry().render(config, inventory)).decode()
    assert f'vmpooler_pool_target_size{{limit="{grown.limit}",pool="pool1"}} {grown.size}.0' in scraped
    assert changes(caplog) == [1, grown.size]

    # Ready VMs made at different times; one of the oldest is checked out and must be left alone.
    stamps = {host: sync_redis.hget(K.vm(host), "ready") for host in ready(sync_redis)}
    clock.advance(5)
    running = await ask(checkout, 1)
    await quiet(manager, sync_redis)
    left = ready(sync_redis)
    assert len(left) == 1 and set(running) <= states(sync_redis, "pool1")["running"]
    newest = max(stamps[host] for host in stamps if host not in running)
    assert all(stamps.get(host, newest) >= newest for host in left), "the oldest ready VMs went first"
    sizes = changes(caplog)
    assert sizes[:2] == [1, grown.size] and sizes[-1] == 1 and len(sizes) > 2


async def test_a_vm_checked_out_during_the_shrink_stays_its_clients(make_manager: MakeManager, inventory: Inventory,
                                                                   sync_redis: redis.Redis) -> None:
    config = sized(POOL.replace("size: 1", "size: 3"))
    manager = await make_manager(config)
    await passes(manager, lambda: len(ready(sync_redis)) == 3)
    worker = manager.workers["pool1"]
    p = await worker._read()  # the pass has read the pool: three ready VMs...
    taken = await ask(Checkout(config, inventory, NullMetrics()), 3)  # ...and a client takes them all
    p.pool = dataclasses.replace(p.pool, size=0)
    await lifecycle.remove_surplus(p)
    assert states(sync_redis, "pool1")["running"] == set(taken) and not states(sync_redis, "pool1")["completed"]


async def test_max_size_and_the_providers_max_vms_cap_the_growth_but_never_the_floors(
        make_manager: MakeManager, inventory: Inventory, sync_redis: redis.Redis) -> None:
    config = sized("""
  - name: pool1
    size: 1
    max_size: 3
  - name: pool2
    size: 1
    max_size: 20
  - name: fixed
    size: 2
""", dummy="clone_time: 0\n    boot_time: 0\n    max_vms: 10")
    manager = await make_manager(config)
    await passes(manager, lambda: len(ready(sync_redis, "pool1")) == 1 and len(ready(sync_redis, "pool2")) == 1
                 and len(ready(sync_redis, "fixed")) == 2)
    checkout = Checkout(config, inventory, NullMetrics())
    await ask(checkout, 12, "pool1")
    await ask(checkout, 12, "pool2")
    await passes(manager, lambda: target(sync_redis, "pool2").limit == "provider_cap"
                 and len(ready(sync_redis, "pool2")) == target(sync_redis, "pool2").size, limit=5)
    assert target(sync_redis, "pool1").size == 3 and target(sync_redis, "pool1").limit == "max_size"
    vms = sum(len(sync_redis.hkeys(K.dummy_folder("dummy", pool))) for pool in ("pool1", "pool2", "fixed"))
    assert vms == 10, "the provider is grown to its max_vms and no further"
    assert "held back by its provider's max_vms" in target(sync_redis, "pool2").why
    # A floor raised through the API is kept even beyond the cap.
    await PoolSettings(config, inventory).set_sizes({"pool2": "12"})
    await passes(manager, lambda: len(ready(sync_redis, "pool2")) == 12, limit=5)
    assert target(sync_redis, "pool2").floor == 12


async def test_a_size_set_through_the_api_is_the_floor_and_may_pin_it_above_max_size(
        make_manager: MakeManager, inventory: Inventory, sync_redis: redis.Redis) -> None:
    config = sized(POOL)
    manager = await make_manager(config)
    settings = PoolSettings(config, inventory)
    await settings.set_sizes({"pool1": "2"})
    await passes(manager, lambda: len(ready(sync_redis)) == 2)
    assert (target(sync_redis).size, target(sync_redis).floor, target(sync_redis).limit) == (2, 2, "floor")
    await settings.set_sizes({"pool1": "8"})
    await passes(manager, lambda: len(ready(sync_redis)) == 8)
    assert (target(sync_redis).size, target(sync_redis).max_size) == (8, 6)


async def test_growth_clones_within_the_task_limit(make_manager: MakeManager, inventory: Inventory,
                                                  sync_redis: redis.Redis) -> None:
    config = sized(POOL.replace("max_size: 6", "max_size: 8"), dummy="clone_time: 0.1\n    boot_time: 0",
                   task_limit=2)
    manager = await make_manager(config)
    await passes(manager, lambda: len(ready(sync_redis)) == 1)
    await ask(Checkout(config, inventory, NullMetrics()), 9)
    peak = 0
    for _ in range(40):
        await manager.run_once()
        for _ in range(10):
            peak = max(peak, int(sync_redis.get(K.clone_tasks()) or 0))
            await asyncio.sleep(0.02)
        if len(ready(sync_redis)) == target(sync_redis).size >= 6:
            break
    await manager.drain()
    assert len(ready(sync_redis)) == target(sync_redis).size >= 6 and 0 < peak <= 2


@pytest.mark.slow
async def test_a_manager_killed_mid_growth_is_restarted_and_finishes_it(tmp_path: Path, redis_url: str,
                                                                         inventory: Inventory,
                                                                         sync_redis: redis.Redis) -> None:
    text = process_config(redis_url, ["pool1"], "clone_time: 0.4\n    boot_time: 0", size=1, task_limit=2)
    text = text.replace("    size: 1\n", "    size: 1\n    max_size: 8\n")
    text += ":demand:\n  bucket_seconds: 0.5\n  window_seconds: 60\n"
    config_file = tmp_path / "vmpooler.yaml"
    config_file.write_text(text)
    folder = K.dummy_folder("dummy", "pool1")
    with FillWatch(redis_url, ["pool1"]) as watch:
        with ManagerProcess(config_file, "m1", tmp_path / "m1.log").start() as first:
            wait_until(lambda: len(ready(sync_redis)) == 1, STARTUP_SECONDS, "the floor filled")
            await ask(Checkout(make_config(text), inventory, NullMetrics()), 10)  # 10 wanted at once
            wait_until(lambda: sync_redis.hexists(K.sizing(), "pool1") and target(sync_redis).size == 8
                       and sync_redis.get(K.clone_tasks()) == "2" and len(ready(sync_redis)) < 8, 15,
                       "growing to 8, two clones in flight")
            first.kill()
        with ManagerProcess(config_file, "m1", tmp_path / "m2.log").start() as second:
            wait_until(lambda: len(ready(sync_redis)) == 8 and not states(sync_redis, "pool1")["pending"], 20,
                       "grown to 8 by the restarted manager")
            second.stop()
    assert watch.peak <= 8, "ready + pending never beyond the target"
    assert set(sync_redis.hkeys(folder)) == set().union(*states(sync_redis, "pool1").values())
    assert first.log().count("pool target size now 8 pool=pool1 (was 1)") == 1
    assert "pool target size now" not in second.log(), "the restarted manager found the target as it was"


async def test_the_pool_is_grown_to_what_it_usually_wants_at_this_hour_and_each_hour_is_recorded(
        make_manager: MakeManager, inventory: Inventory, sync_redis: redis.Redis) -> None:
    config = sized(POOL)
    hour = demand.hour_of(float(sync_redis.time()[0]), config.demand.day_seconds)
    for past in (hour - 24, hour - 23):  # yesterday, this hour and the next one: 5 VMs wanted within a refill
        sync_redis.hset(K.demand("pool1"), demand.profile_field(past), f"{past} 5")
    manager = await make_manager(config)
    await passes(manager, lambda: len(ready(sync_redis)) == 5)
    assert target(sync_redis).usual == 5 and "usually 5 at this hour" in target(sync_redis).why
    await ask(Checkout(config, inventory, NullMetrics()), 3)
    await passes(manager, lambda: demand.read_profile(sync_redis.hgetall(K.demand("pool1"))).get(hour, 0) >= 3,
                 limit=3)
