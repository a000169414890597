"""Time from an on-demand request to its N VMs ready, with clones that take D seconds and `task_limit` C.

    python bench/ondemand.py [--sizes 10,100] [--clone-time 1.0] [--task-limit 10] [--runs 3]

The ideal is ceil(N / C) * D: C clones at a time, back to back, each delivered the moment it ends. The
manager (dummy provider, boot time 0, a pool of size 0) runs on a Redis server of its own and has made its
first pass; the clock starts when the request is made (as the API makes it: vmpooler_core.provisioning)
and stops when the request reads ready (as the API reads it), polled every 10 ms. Prints the median of
`--runs` runs and actual / ideal.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import asyncio as aioredis

from bench.fill import arguments
from tests.redis_server import RedisServer
from vmpooler_core.config_loader import load
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.ondemand import Wanted
from vmpooler_core.provisioning import Provisioning
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers

K = Keys()


async def once(size: int, clone_time: float, task_limit: int) -> float:
    server = RedisServer().start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    config = load(text=f""":redis:
  url: {server.url}
:config:
  task_limit: {task_limit}
  manager_loop_seconds: 5
  vm_checktime: 1
  max_ondemand_instances_per_request: {size}
:providers:
  :dummy: {{clone_time: {clone_time}, boot_time: 0}}
:pools:
  - name: bench
    size: 0
""", env={})
    providers = build_providers(config)
    manager = Manager(config, client, providers, NullMetrics())
    provisioning = Provisioning(config, Inventory(client))
    stop = asyncio.Event()
    loop = asyncio.create_task(manager.run_forever(stop))
    try:
        while await client.get(K.lease("bench")) is None:  # the manager's first pass
            await asyncio.sleep(0.01)
        started = time.monotonic()
        request_id = await provisioning.submit(Wanted((("bench", size),)))
        while (await provisioning.status(request_id)).status != "ready":
            if loop.done():
                loop.result()
            if time.monotonic() - started > 20 * math.ceil(size / task_limit) * clone_time + 60:
                raise RuntimeError("the request was not filled")
            await asyncio.sleep(0.01)
        return time.monotonic() - started
    finally:
        stop.set()
        await loop
        close_providers(providers)
        await client.aclose()
        server.stop()


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], "10,100").parse_args()
    print(f"on-demand request to ready, dummy provider, median of {args.runs} runs, D = {args.clone_time:g} s, "
          f"C = {args.task_limit}")
    print(f"{'N':>5} {'ideal s':>8} {'actual s':>9} {'actual/ideal':>13}  runs")
    for size in (int(s) for s in args.sizes.split(",")):
        ideal = math.ceil(size / args.task_limit) * args.clone_time
        runs = [await once(size, args.clone_time, args.task_limit) for _ in range(args.runs)]
        actual = statistics.median(runs)
        detail = " ".join(f"{r:.2f}" for r in runs)
        print(f"{size:>5} {ideal:>8.2f} {actual:>9.2f} {actual / ideal:>13.3f}  {detail}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
