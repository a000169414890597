"""Checkouts answered just before Redis is killed, measured: a lone Redis with appendonly yes and
appendfsync everysec is killed with `kill -9` under load and started again on its AOF, and every
checkout that was answered (and not returned) is looked for in `running`. One that is not was lost, and
its VM, back in `ready`, is handed out again: the next checkouts take every ready VM and count those.

    python bench/redis_kill.py [--kills 10] [--durability none|aof] [--slow-fsync-ms N]
                               [--redis-server PATH|valkey] [--clients 8]

Eight clients check out and return VMs through the core's Checkout (the API's Redis client and
scripts) as fast as they can; Redis is killed at a random moment 1 to 2 s into each round. A killed
process's AOF writes stay in the kernel's page cache, so what a kill -9 loses is only what Redis had
answered and not yet written: with everysec, it holds its AOF write back while a background fsync is
still running (up to 2 s). `--slow-fsync-ms N` makes each fsync N ms longer (bench/slow_fsync.c: a disk
busy with other writes), as the soak run can. `durability: aof` (WAITAOF) needs Redis 7.2 or later:
`--redis-server valkey` runs the valkey-server of the embedded defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.soak_setup import SoakRedis, kill_redis  # noqa: E402
from vmpooler_core import config_loader  # noqa: E402
from vmpooler_core.checkout import Checkout  # noqa: E402
from vmpooler_core.errors import BackendUnavailable  # noqa: E402
from vmpooler_core.inventory import Inventory  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402
from vmpooler_core.metrics import NullMetrics  # noqa: E402
from vmpooler_core.request import from_path  # noqa: E402
from vmpoolerd import embedded  # noqa: E402
from vmpoolerd.api.app import api_redis  # noqa: E402

K = Keys()
POOL = "p"
HOSTS = 50_000  # more than the clients check out in a round


async def _round(server: SoakRedis, durability: str, clients: int, rng: random.Random) -> tuple[int, int, int]:
    """One round: load, kill -9, restart. Returns (checkouts answered, lost, handed out again)."""
    sync = redis.Redis(port=server.port, decode_responses=True)
    sync.flushall()
    for start in range(0, HOSTS, 10_000):
        sync.sadd(K.ready(POOL), *(f"h{n}" for n in range(start, start + 10_000)))
    config = config_loader.load(text=f"redis:\n  url: '{server.url}'\n  durability: {durability}\n"
                                f"providers: {{dummy: {{}}}}\npools:\n  - {{name: {POOL}, size: 1}}\n",
                                env={}, source="bench")
    client = api_redis(config)
    inventory = Inventory(client, durability=durability)
    checkout = Checkout(config, inventory, NullMetrics())
    held: set[str] = set()  # answered and not returned
    answered = 0
    stop = asyncio.Event()

    async def client_loop(seed: float) -> None:
        nonlocal answered
        mine = random.Random(seed)
        while not stop.is_set():
            try:
                hosts = (await checkout.take(from_path(POOL))).hosts()
                answered += len(hosts)
                held.update(hosts)
                if held and mine.random() < 0.5:
                    host = mine.choice(sorted(held))
                    held.discard(host)  # before the answer: a return in doubt is not counted as held
                    await inventory.return_vm(host)
            except (BackendUnavailable, redis.RedisError, OSError):
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(client_loop(rng.random())) for _ in range(clients)]
    await asyncio.sleep(rng.uniform(1.0, 2.0))
    await asyncio.to_thread(kill_redis, server, 0.2)
    stop.set()
    await asyncio.gather(*tasks)
    await client.aclose()
    running = sync.smembers(K.running(POOL))
    lost = held - running
    again = lost & sync.smembers(K.ready(POOL))  # what the next checkouts hand out a second time
    sync.close()
    return answered, len(lost), len(again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--durability", default="none", choices=("none", "aof"))
    parser.add_argument("--slow-fsync-ms", type=int, default=0, help="each of Redis's fsyncs this much longer")
    parser.add_argument("--redis-server", default=None,
                        help="the redis-server binary; 'valkey': the valkey-server of the embedded defaults")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    binary = embedded.server_binary() if args.redis_server == "valkey" else args.redis_server
    workdir = tempfile.mkdtemp(prefix="vmpooler-redis-kill-")
    server = SoakRedis(workdir, binary, args.slow_fsync_ms)
    server.start()
    rng = random.Random(args.seed)
    total = lost = again = 0
    started = time.monotonic()
    try:
        print(f"{server.version()}, appendfsync everysec, durability {args.durability}"
              + (f", each fsync {args.slow_fsync_ms} ms longer" if args.slow_fsync_ms else ""), flush=True)
        for kill in range(args.kills):
            answered, missing, twice = asyncio.run(_round(server, args.durability, args.clients, rng))
            total, lost, again = total + answered, lost + missing, again + twice
            print(f"kill {kill}: {answered} checkouts answered, {missing} lost, {twice} handed out again", flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.kills} kills: {total} checkouts answered, {lost} lost, {again} handed out twice "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
