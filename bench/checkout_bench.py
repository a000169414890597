"""Checkout + return throughput through the core, against a real Redis server.

    python bench/checkout_bench.py [--seconds 3] [--runs 5]

For ready sets of 10, 1,000 and 100,000 VMs it prints the median rate of:
- `checkout` alone (one Lua round trip per request, the API's hot path; VMs are put back between
  timed batches, outside the clock),
- full cycles: checkout + return (return.lua) + requeue (completed -> ready, so the set keeps its size),
one client awaiting each call in turn (latency-bound) and 8 concurrent tasks on one connection pool.
Then redis-benchmark runs the same checkout.lua by EVALSHA, the ceiling for one round trip per
checkout on this machine, and the ratio of ours to it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from tests.redis_server import RedisServer
from vmpooler_core import scripts
from vmpooler_core.checkout import Checkout
from vmpooler_core.config_loader import load
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest

K = Keys()
REQUEST = CheckoutRequest((("pool1", 1),))


def fill(url: str, size: int) -> None:
    r = redis.Redis.from_url(url)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for start in range(0, size, 10_000):
        hosts = [f"vm{i:07d}" for i in range(start, min(size, start + 10_000))]
        pipe.sadd(K.ready("pool1"), *hosts)
        for host in hosts:
            pipe.hset(K.vm(host), mapping={"pool": "pool1", "template": "pool1"})
        pipe.execute()
    r.close()


async def measure(url: str, seconds: float, tasks: int, cycle: bool, size: int) -> float:
    """Requests per second of timed work only: in `checkout` mode the VMs are put back between
    timed batches (untimed), so the figure is the checkout request alone."""
    cfg = load(text=f"redis: {{url: '{url}'}}\nproviders: {{dummy: {{}}}}\npools:\n  - {{name: pool1, size: 1}}\n",
               env={})
    client = connect(cfg.redis)
    inventory = Inventory(client)
    co = Checkout(cfg, inventory, NullMetrics())
    done = 0
    timed = 0.0
    batch = max(1, min(size - 1, 2_000) // tasks)

    async def cycles(until: float) -> None:
        nonlocal done
        while time.perf_counter() < until:
            host = (await co.take(REQUEST)).hosts()[0]
            await co.give_back(host)
            await inventory.move("pool1", host, "completed", "ready")
            done += 1

    async def checkouts() -> None:
        nonlocal done
        for _ in range(batch):
            await co.take(REQUEST)
            done += 1

    while timed < seconds:
        start = time.perf_counter()
        if cycle:
            await asyncio.gather(*(cycles(start + seconds) for _ in range(tasks)))
        else:
            await asyncio.gather(*(checkouts() for _ in range(tasks)))
        timed += time.perf_counter() - start
        if not cycle:  # untimed: everything running goes back to ready
            await client.eval("for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
                              "redis.call('SMOVE', KEYS[1], KEYS[2], h) end", 2,
                              K.running("pool1"), K.ready("pool1"))
    await client.aclose()
    return done / timed


def ceiling(server: RedisServer, clients: int) -> float | None:
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    fill(server.url, 200_000)
    r = redis.Redis.from_url(server.url)
    sha = r.script_load(scripts.source("checkout"))
    r.close()
    out = subprocess.run([tool, "-p", str(server.port), "-n", "100000", "-c", str(clients), "-q",
                          "EVALSHA", sha, "0", "vmpooler", "", "2026-01-01 00:00:00 +0000", "", "", "bench", "-", "1",
                          "pool1", "1", "1", "pool1"], capture_output=True, text=True, check=True).stdout
    # "EVALSHA ...: 51234.56 requests per second, p50=..." (the line may carry \r progress output)
    rates = re.findall(r"([\d.]+) requests per second", out)
    return float(rates[-1]) if rates else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        print(f"{'ready VMs':>10} {'mode':>22} {'tasks':>5} {'median/s':>10}  runs")
        medians: dict[tuple[int, bool, int], float] = {}
        for size in (10, 1_000, 100_000):
            for cycle in (False, True):
                for tasks in (1, 8):
                    rates = []
                    for _ in range(args.runs):
                        fill(server.url, size)
                        rates.append(asyncio.run(measure(server.url, args.seconds, tasks, cycle, size)))
                    med = statistics.median(rates)
                    medians[(size, cycle, tasks)] = med
                    mode = "checkout+return+requeue" if cycle else "checkout"
                    print(f"{size:>10} {mode:>22} {tasks:>5} {med:>10.0f}  {' '.join(f'{r:.0f}' for r in rates)}")
        small, big = medians[(10, True, 1)], medians[(100_000, True, 1)]
        print(f"\ncycle rate at 100,000 ready / at 10 ready: {big / small:.2f} (1.00 = no growth with set size)")
        for clients in (1, 8):
            top = ceiling(server, clients)
            if top is None:
                print("redis-benchmark not installed or printed no rate: no ceiling measured")
                break
            ours = medians[(100_000, False, clients)]
            print(f"redis-benchmark EVALSHA checkout.lua, {clients} client(s): {top:.0f}/s; "
                  f"ours (checkout, {clients} task(s)) {ours:.0f}/s = {100 * ours / top:.0f}% of the ceiling")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
