"""The window of a planned failover, measured: a write that the former primary answers just before the
replica's promotion, and has not yet delivered to it, would be lost. One client checks VMs out as fast as
it can (the core's Checkout, through the API's Redis client) through `SENTINEL FAILOVER`, on a primary,
a replica and three sentinels (tests/sentinels.py), and every VM answered is then looked for on the
promoted replica.

    python bench/fence_window.py [--runs 6] [--durability none|replica] [--fence-only]

`--fence-only`: the fence alone, without waiting for the replicas before answering (what `durability:
none` did before it waited for them): the writes in flight at the promotion are lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.sentinels import MASTER, Group, sentinel_group  # noqa: E402
from vmpooler_core import config_loader, scripts  # noqa: E402
from vmpooler_core.checkout import Checkout  # noqa: E402
from vmpooler_core.errors import BackendUnavailable  # noqa: E402
from vmpooler_core.inventory import Inventory  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402
from vmpooler_core.metrics import NullMetrics  # noqa: E402
from vmpooler_core.request import from_path  # noqa: E402
from vmpoolerd.api.app import api_redis  # noqa: E402

K = Keys()
POOL = "p"
HOSTS = 60_000  # more than one client checks out in a run


async def _run(group: Group, durability: str, fence_only: bool) -> tuple[int, int]:
    config = config_loader.load(text=f"redis:\n  sentinels: {group.sentinels_yaml}\n  master: {MASTER}\n"
                                f"  durability: {durability}\nproviders: {{dummy: {{}}}}\n"
                                f"pools:\n  - {{name: {POOL}, size: 1}}\n", env={}, source="bench")
    primary = group.client(group.primary_port())
    for start in range(0, HOSTS, 10_000):
        primary.sadd(K.ready(POOL), *(f"h{n}" for n in range(start, start + 10_000)))
    client = api_redis(config)
    inventory = Inventory(client, durability=durability)
    if fence_only:
        inventory._scripts._confirmations = list  # type: ignore[method-assign]  # the fence, no waiting
    checkout = Checkout(config, inventory, NullMetrics())
    answered: list[str] = []
    stop = asyncio.Event()

    async def client_loop() -> None:
        while not stop.is_set():
            try:
                answered.extend((await checkout.take(from_path(POOL))).hosts())
            except (BackendUnavailable, redis.RedisError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(client_loop())
    await asyncio.sleep(0.5)
    promoted = await asyncio.to_thread(lambda: group.moved_from(group.failover()))
    await asyncio.sleep(0.3)
    stop.set()
    await task
    await client.aclose()
    running = group.client(promoted).smembers(K.running(POOL))
    return len(answered), sum(1 for host in answered if host not in running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--durability", default="none", choices=scripts.DURABILITY)
    parser.add_argument("--fence-only", action="store_true", help="do not wait for the replicas")
    args = parser.parse_args()
    total = lost = 0
    started = time.monotonic()
    for run in range(args.runs):
        with sentinel_group() as group:
            answered, missing = asyncio.run(_run(group, args.durability, args.fence_only))
        total, lost = total + answered, lost + missing
        print(f"run {run}: {answered} checkouts answered, {missing} lost", flush=True)
    print(f"{args.runs} failovers: {total} checkouts answered, {lost} lost ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
