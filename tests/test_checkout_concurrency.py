"""Many processes checking out from the same pools at once, on one real Redis.

Every VM is handed out at most once, none is lost (ready + running equals what was there), and no
request is half-filled: each success got exactly what it asked for, each failure took nothing.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random

import redis

from tests.conftest import make_config
from vmpooler_core.checkout import Checkout
from vmpooler_core.errors import NoCapacity
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest

CONFIG = """
redis: {url: "%s"}
providers: {dummy: {}}
pools:
  - {name: a, alias: [any, small], size: 1}
  - {name: b, alias: [any], size: 1}
  - {name: c, size: 1}
"""
PER_POOL = 150
PROCESSES = 8


def _worker(url: str, seed: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> list[tuple[dict[str, int], list[tuple[str, str, str]] | None]]:
        cfg = make_config(CONFIG % url)
        client = connect(cfg.redis)
        co = Checkout(cfg, Inventory(client), NullMetrics())
        rng = random.Random(seed)
        results: list[tuple[dict[str, int], list[tuple[str, str, str]] | None]] = []
        failures_in_a_row = 0
        while failures_in_a_row < 20:
            names = rng.sample(["a", "b", "c", "any", "small"], rng.randint(1, 3))
            counts = {name: rng.randint(1, 4) for name in names}
            try:
                got = await co.take(CheckoutRequest(tuple(counts.items())))
                results.append((counts, [tuple(vm) for vm in got.vms]))  # type: ignore[misc]
                failures_in_a_row = 0
            except NoCapacity:
                results.append((counts, None))
                failures_in_a_row += 1
        await client.aclose()
        return results

    out.put(asyncio.run(run()))


def test_no_vm_handed_twice_or_lost(redis_url: str, sync_redis: redis.Redis) -> None:
    keys = Keys()
    cfg = make_config(CONFIG % redis_url)
    initial = {pool: {f"{pool}-vm{i:03d}" for i in range(PER_POOL)} for pool in ("a", "b", "c")}
    for pool, hosts in initial.items():
        sync_redis.sadd(keys.ready(pool), *hosts)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_worker, args=(redis_url, seed, out)) for seed in range(PROCESSES)]
    for proc in procs:
        proc.start()
    results = [item for _ in procs for item in out.get(timeout=120)]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0

    handed: list[str] = []
    for counts, vms in results:
        if vms is None:
            continue
        got: dict[str, int] = {}
        for requested, pool, host in vms:
            assert pool in cfg.candidates(requested), (requested, pool)
            assert host in initial[pool]
            got[requested] = got.get(requested, 0) + 1
            handed.append(host)
        assert got == counts, "a request was half-filled"
    assert len(handed) == len(set(handed)), "a VM was handed out twice"
    assert sum(1 for _, vms in results if vms) > PROCESSES  # the run really exercised checkouts

    for pool, hosts in initial.items():
        ready = sync_redis.smembers(keys.ready(pool))
        running = sync_redis.smembers(keys.running(pool))
        assert not ready & running
        assert ready | running == hosts, "a VM was lost"
        assert running == {h for h in handed if h in hosts}
        assert set(sync_redis.hkeys(keys.active(pool))) == running
