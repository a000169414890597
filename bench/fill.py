"""Fill time of an empty pool of N VMs, with clones that take D seconds and `task_limit` C.

    python bench/fill.py [--sizes 50,200] [--clone-time 1.0] [--task-limit 10] [--runs 3]
                         [--provider dummy,vcsim]

The ideal is ceil(N / C) * D: C clones at a time, back to back, each ready the moment it ends. For each
provider (the dummy provider, and the vSphere provider against the vCenter simulator of tests/vcsim when
it can be built) it prints the median of `--runs` fills, from the manager's start until N VMs are ready,
and actual / ideal (target: <= 1.15). Each run starts from an empty Redis (its own server) and, for
vcsim, a fresh simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from redis import asyncio as aioredis

from tests.redis_server import RedisServer
from tests.vcsim.server import VcsimServer, can_build
from vmpooler_core.config import Config
from vmpooler_core.config_loader import load
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers

K = Keys()
TEMPLATE = "templates/centos-6-x86_64"


def config_for(provider: str, size: int, clone_time: float, task_limit: int,
               sim: VcsimServer | None, redis_url: str) -> Config:
    app = (f":redis:\n  url: {redis_url}\n"
           f":config:\n  task_limit: {task_limit}\n  manager_loop_seconds: 5\n  vm_checktime: 1\n")
    if provider == "dummy":
        return load(text=app + f":providers:\n  :dummy:\n    clone_time: {clone_time}\n    boot_time: 0\n"
                    f":pools:\n  - name: bench\n    size: {size}\n", env={})
    assert sim is not None
    return load(text=app + ":providers:\n" + sim.provider_yaml(ready_check="hostname") + f""":pools:
  - name: bench
    size: {size}
    template: {TEMPLATE}
    folder: vmpooler/bench
    provider: vsphere
""", env={})


async def fill_once(provider: str, size: int, clone_time: float, task_limit: int) -> float:
    server = RedisServer().start()
    sim = None
    if provider == "vcsim":
        sim = VcsimServer(templates=[TEMPLATE], folders=["vmpooler/bench"],
                          clone_delay_ms=int(clone_time * 1000)).start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    check = redis.Redis.from_url(server.url, decode_responses=True)
    config = config_for(provider, size, clone_time, task_limit, sim, server.url)
    providers = build_providers(config)
    manager = Manager(config, client, providers, NullMetrics())
    stop = asyncio.Event()
    try:
        started = time.monotonic()
        loop = asyncio.create_task(manager.run_forever(stop))
        while check.scard(K.ready("bench")) < size:
            if loop.done():
                loop.result()
            if time.monotonic() - started > 20 * math.ceil(size / task_limit) * clone_time + 60:
                raise RuntimeError("fill did not finish")
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        stop.set()
        await loop
        return elapsed
    finally:
        close_providers(providers)
        await client.aclose()
        check.close()
        if sim is not None:
            sim.stop()
        server.stop()


def arguments(description: str, sizes: str) -> argparse.ArgumentParser:
    """The options of the benchmarks against the ideal ceil(N / C) * D (this one and bench/ondemand.py)."""
    logging.getLogger("vmpooler").setLevel(logging.ERROR)  # the figures only
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", default=sizes)
    parser.add_argument("--clone-time", type=float, default=1.0, help="D, seconds")
    parser.add_argument("--task-limit", type=int, default=10, help="C")
    parser.add_argument("--runs", type=int, default=3)
    return parser


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "50,200")
    parser.add_argument("--provider", default="dummy,vcsim")
    args = parser.parse_args()
    providers = args.provider.split(",")
    if "vcsim" in providers and not can_build():
        print("vcsim: Go or govmomi missing (scripts/test installs them): dummy provider only")
        providers.remove("vcsim")
    print(f"fill time, median of {args.runs} runs, D = {args.clone_time:g} s, C = {args.task_limit}")
    print(f"{'provider':<9} {'N':>5} {'ideal s':>8} {'actual s':>9} {'actual/ideal':>13}  runs")
    for provider in providers:
        for size in (int(s) for s in args.sizes.split(",")):
            ideal = math.ceil(size / args.task_limit) * args.clone_time
            runs = [await fill_once(provider, size, args.clone_time, args.task_limit)
                    for _ in range(args.runs)]
            actual = statistics.median(runs)
            detail = " ".join(f"{r:.2f}" for r in runs)
            print(f"{provider:<9} {size:>5} {ideal:>8.2f} {actual:>9.2f} {actual / ideal:>13.3f}  {detail}",
                  flush=True)


if __name__ == "__main__":
    asyncio.run(main())
