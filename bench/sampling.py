"""What the dashboard's history costs at 100 pools: a day of one-minute samples written through the real
sample script, then read back by a real `vmpoolerd api`.

    python bench/sampling.py [--pools 100] [--minutes 1440] [--requests 20]

Starts its own redis-server, fills every pool's sets (ready, pending, running) and tallies, then takes
`--minutes` samples of all the pools (pool_history.take, what the manager does once a minute: one fenced
script call), each for the next minute, and prints:
- one sampling pass: the manager's CPU for it (process time of this client around the call) and Redis's
  (the script's time from INFO commandstats), median and 99th percentile;
- Redis memory: used_memory before and after the day of samples, and MEMORY USAGE of the samples and
  rollups of every pool, and of their recent clone and boot times (RECENT_KEPT each);
- reading it back: the page's history document made afresh in the API's code (1 h, 6 h and 24 h; the API
  makes one at most every 15 s a window), then `vmpoolerd api` answering it (as served meanwhile) and the
  original's `pool?history=1` and `running?history=1`: the server's CPU per request (utime + stime from
  /proc) and its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from redis import asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer, free_port  # noqa: E402
from vmpooler_core import config_loader, pool_history  # noqa: E402
from vmpooler_core.inventory import Inventory  # noqa: E402
from vmpooler_core.keys import RECENT_KEPT, Keys  # noqa: E402
from vmpooler_core.metrics import NullMetrics  # noqa: E402
from vmpooler_core.pool_history import PoolFigures  # noqa: E402
from vmpoolerd.api import dashboard_stats  # noqa: E402
from vmpoolerd.api.services import Services  # noqa: E402

K = Keys()
FAMILIES = ("centos", "debian", "fedora", "opensuse", "oracle", "redhat", "rocky", "sles", "ubuntu", "win")
TICK = os.sysconf("SC_CLK_TCK")  # clock ticks per second of /proc/<pid>/stat


def names(count: int) -> list[str]:
    return [f"{FAMILIES[i % len(FAMILIES)]}-{i // len(FAMILIES) + 1}-x86_64" for i in range(count)]


def fill(client: redis.Redis, pools: list[str]) -> None:
    """Each pool with a few VMs in each state and a tally of checkouts, as a busy day leaves them."""
    pipe = client.pipeline(transaction=False)
    for index, pool in enumerate(pools):
        pipe.sadd(K.ready(pool), *(f"{pool}-r{i}" for i in range(5 + index % 7)))
        pipe.sadd(K.pending(pool), *(f"{pool}-p{i}" for i in range(1 + index % 3)))
        pipe.sadd(K.running(pool), *(f"{pool}-u{i}" for i in range(10 + index % 13)))
    pipe.execute()


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def script_usec(client: redis.Redis) -> tuple[int, int]:
    """(calls, usec) of EVALSHA and EVAL so far: the scripts' time inside Redis."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        if name in stats:
            calls += int(stats[name]["calls"])
            usec += int(stats[name]["usec"])
    return calls, usec


async def sample_day(url: str, pools: list[str], minutes: int, client: redis.Redis) -> tuple[list[float], list[float]]:
    """Every minute's pass over all the pools; per pass, this process's CPU and Redis's, in ms."""
    connection = aioredis.Redis.from_url(url, decode_responses=True)
    inventory = Inventory(connection)
    figures = [PoolFigures(pool, 10 + i % 20) for i, pool in enumerate(pools)]
    first = int(time.time() // 60) - minutes + 1
    tally = redis.Redis.from_url(url)
    mine: list[float] = []
    theirs: list[float] = []
    try:
        await pool_history.take(inventory, figures, first - 1)  # loads the script: not measured
        for minute in range(first, first + minutes):
            tally.hset(K.tally(), mapping={f"checkout:{pool}": minute % 4 for pool in pools[::3]})
            calls, usec = script_usec(client)
            started = time.process_time()
            await pool_history.take(inventory, figures, minute)
            mine.append((time.process_time() - started) * 1000)
            after_calls, after_usec = script_usec(client)
            assert after_calls - calls == 1, "one script call a pass"
            theirs.append((after_usec - usec) / 1000)
    finally:
        await connection.aclose()
        tally.close()
    return mine, theirs


def recent_times(client: redis.Redis, pools: list[str]) -> None:
    """Each pool's recent clone and boot times, as full as they get (the entries record_clone and
    record_boot append)."""
    pipe = client.pipeline(transaction=False)
    for pool in pools:
        for phase, base in (("clone", 20), ("boot", 60)):
            pipe.rpush(K.recent(phase, pool), *(f"{int(time.time())} {base + i % 40}.00" for i in range(RECENT_KEPT)))
    pipe.execute()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def config_text(url: str, pools: list[str]) -> str:
    listed = "\n".join(f"  - {{name: {pool}, size: {10 + i % 20}}}" for i, pool in enumerate(pools))
    return (f"redis: {{url: '{url}'}}\nconfig: {{log_level: WARNING}}\nproviders: {{dummy: {{}}}}\n"
            f"pools:\n{listed}\n")


def serve(url: str, pools: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / "vmpooler.yaml"
    config.write_text(config_text(url, pools))
    proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "api", "--config", str(config), "--port", str(port)],
                            cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("vmpoolerd did not start")


async def making(url: str, pools: list[str], requests: int) -> None:
    """The page's history document made afresh (what the API does at most every FRESH_SECONDS a window):
    this process's CPU for it, in the API's own code."""
    config = config_loader.load(text=config_text(url, pools), env={}, source="bench.yaml")
    client = aioredis.Redis.from_url(url, decode_responses=True)
    services = Services.build(config, client, NullMetrics(), None, 10.0)
    try:
        for hours in (1, 6, 24):
            took = []
            for _ in range(requests):
                started = time.process_time()
                await dashboard_stats._history(services, hours)
                took.append((time.process_time() - started) * 1000)
            median = statistics.median(took)
            print(f"  the history document of {hours:>2} h made afresh: API CPU median {median:5.1f} ms")
    finally:
        await client.aclose()


def read_back(port: int, pid: int, requests: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for path in ("/dashboard/stats/vmpooler/history?hours=6", "/dashboard/stats/vmpooler/history?hours=24",
                     "/dashboard/stats/vmpooler/pool?history=1", "/dashboard/stats/vmpooler/running?history=1"):
            http.get(path).raise_for_status()  # warm
            took: list[float] = []
            before = cpu_seconds(pid)
            size = 0
            for _ in range(requests):
                started = time.perf_counter()
                response = http.get(path)
                took.append((time.perf_counter() - started) * 1000)
                size = len(response.content)
            cpu = (cpu_seconds(pid) - before) / requests * 1000
            served = " (as made in the last 15 s)" if "history?" in path else ""
            print(f"  {path:<46} server CPU {cpu:6.1f} ms/request, latency median {statistics.median(took):6.1f} ms, "
                  f"{size / 1024:4.0f} KiB{served}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    workdir = Path(tempfile.mkdtemp(prefix="vmpooler-bench-"))
    pools = names(args.pools)
    try:
        fill(client, pools)
        before = used_memory(client)
        mine, theirs = asyncio.run(sample_day(server.url, pools, args.minutes, client))
        after = used_memory(client)
        recent_times(client, pools)
        one = pools[0]
        print(f"redis-server {client.info('server')['redis_version']}; {args.pools} pools, {args.minutes} samples each")
        print(f"one sampling pass (all pools, one script call): manager CPU median {statistics.median(mine):.2f} ms, "
              f"p99 {p99(mine):.2f} ms; Redis CPU median {statistics.median(theirs):.2f} ms, p99 {p99(theirs):.2f} ms")
        samples = sum(int(client.memory_usage(K.samples(pool, span), samples=0) or 0)
                      for pool in pools for span in (1, *pool_history.ROLLUPS))
        recent = sum(int(client.memory_usage(K.recent(phase, pool), samples=0) or 0)
                     for pool in pools for phase in pool_history.PHASES)
        print(f"Redis used_memory: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after "
              f"(+{(after - before) / 2**20:.1f} MiB)")
        print(f"MEMORY USAGE: samples and rollups {samples / 2**20:.2f} MiB in all ({samples / args.pools / 1024:.1f} "
              f"KiB a pool: {client.llen(K.samples(one))} minutes, "
              + ", ".join(f"{client.llen(K.samples(one, span))} of {span}" for span in pool_history.ROLLUPS)
              + f"), recent clone and boot times {recent / 2**20:.2f} MiB")
        proc, port = serve(server.url, pools, workdir)
        try:
            print(f"reading it back ({args.requests} requests each):")
            asyncio.run(making(server.url, pools, args.requests))
            read_back(port, proc.pid, args.requests)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
