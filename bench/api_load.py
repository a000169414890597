"""Load benchmark of the vmpoolerd API on loopback.

Starts its own redis-server and `vmpoolerd api` subprocess, fills pool1's ready set (2,000 and 100,000
VMs by default), then for each of GET /api/v1/status and checkout+return cycles, with a new connection
per request and with keep-alive, at concurrency 1, 4 and 16, prints requests/s, p50/p99 latency and
the server process's CPU time per request (utime+stime from /proc/<pid>/stat before and after: on a
shared 2-core machine, where this generator competes for the same cores, that is the figure that holds).

The load generator is asyncio on raw sockets (uvloop when installed) so that it costs little CPU; each
returned VM is put back into the ready set as it goes, so the ready set stays at its size.

    python bench/api_load.py [--sizes 2000,100000] [--concurrency 1,4,16] [--seconds 3]
                             [--workloads status,checkout+return] [--connections keep-alive,new]
                             [--rate-limits] [--demand] [--durability none|replica|aof] [--replica]
                             [--appendonly] [--redis-server PATH|valkey]

`--durability replica` attaches a replica to the Redis server (WAIT before each checkout and return is
answered; `--replica` attaches one for the other modes too, which then wait for it as well);
`--durability aof` runs it with appendonly (WAITAOF: Redis 7.2 or later, e.g. the valkey-server
of the embedded defaults: `--redis-server valkey`); `--appendonly` turns the AOF on (everysec) in the
other modes too, so that `none` and `aof` are compared on the same server. The Redis server's own CPU
per request (all its threads, the AOF's background fsync included) is printed beside the daemon's.

Targets: at most 0.25 ms of server CPU per checkout or return request and 0.4 ms per status request,
the same at 100,000 ready as at 2,000, and p99 under 10 ms at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis
import redis.asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer, free_port  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402

K = Keys()
POOLS = 10  # pools in the config, so /status has a realistic amount of work
T = TypeVar("T")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class Http:
    """A minimal HTTP/1.1 client on one connection: just enough for this API's small JSON replies."""

    def __init__(self, host: str, port: int, keep_alive: bool) -> None:
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        connection = b"keep-alive" if self.keep_alive else b"close"
        self.writer.write(b"%s %s HTTP/1.1\r\nHost: bench\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s"
                          % (method.encode(), path.encode(), connection, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length)
        if not self.keep_alive:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def arun(coro: Awaitable[T]) -> T:
    """Run on uvloop when installed: the generator must stay cheap next to the server."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads: /proc/<pid>/stat fields 14 and 15."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICK, int(fields[12]) / CLOCK_TICK


def cpu_total(pid: int) -> float:
    return sum(cpu_times(pid))


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    user: float
    system: float
    errors: int
    redis_cpu: float = 0.0  # seconds of the Redis server's CPU


Step = Callable[[Http, list[float]], Awaitable[int]]


async def status_step(http: Http, latencies: list[float]) -> int:
    start = time.perf_counter()
    code, _ = await http.request("GET", "/api/v1/status")
    latencies.append(time.perf_counter() - start)
    return 0 if code == 200 else 1


def cycle_step(refill: redis.asyncio.Redis) -> Step:
    async def step(http: Http, latencies: list[float]) -> int:
        start = time.perf_counter()
        code, body = await http.request("POST", "/api/v1/vm/pool1")
        latencies.append(time.perf_counter() - start)
        if code != 200:
            return 1
        host = json.loads(body)["pool1"]["hostname"]
        start = time.perf_counter()
        code, _ = await http.request("DELETE", f"/api/v1/vm/{host}")
        latencies.append(time.perf_counter() - start)
        # Put it back, as the manager would replace it: the ready set keeps its size.
        await refill.smove(K.completed("pool1"), K.ready("pool1"), host)
        return 0 if code == 200 else 1

    return step


async def run(port: int, pid: int, step: Step, concurrency: int, keep_alive: bool, seconds: float,
              redis_pid: int | None = None) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        http = Http("127.0.0.1", port, keep_alive)
        while time.perf_counter() < deadline:
            errors += await step(http, latencies)
        await http.close()

    redis_before = cpu_total(redis_pid) if redis_pid else 0.0
    (user, system), started = cpu_times(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, (user_after, system_after) = time.perf_counter() - started, cpu_times(pid)
    redis_cpu = cpu_total(redis_pid) - redis_before if redis_pid else 0.0
    return Result(len(latencies), elapsed, latencies, user_after - user, system_after - system, errors, redis_cpu)


def fill(client: redis.Redis, size: int) -> None:
    client.flushall()
    for start in range(0, size, 5000):
        pipe = client.pipeline(transaction=False)
        hosts = [f"bench{n:07d}" for n in range(start, min(size, start + 5000))]
        pipe.sadd(K.ready("pool1"), *hosts)
        for host in hosts:
            pipe.hset(K.vm(host), mapping={"pool": "pool1", "template": "pool1"})
        pipe.execute()


# Rate limiting on, with limits no run reaches: every request pays for being counted, none is refused.
RATE_LIMITS = ("rate_limits:\n  enabled: true\n" +
               "".join(f"  {cls}: {{limit: 1000000000, period: 60}}\n" for cls in ("checkout", "return", "other")))


def start_daemon(redis_url: str, workdir: str, rate_limits: bool = False,
                 durability: str = "none", demand: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = Path(workdir) / "vmpooler.yaml"
    sized = ", max_size: 100000" if demand else ""  # sized to demand: each checkout counted (lua/demand.lua)
    pools = "\n".join(f"  - {{name: pool{n}, alias: [alias{n}], size: 100000{sized}}}" for n in range(1, POOLS + 1))
    config.write_text(f"redis: {{url: '{redis_url}', durability: {durability}}}\n"
                      "config: {domain: example.com, log_level: WARNING}\n"
                      f"providers: {{dummy: {{}}}}\npools:\n{pools}\n{RATE_LIMITS if rate_limits else ''}")
    proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "api", "--config", str(config), "--port",
                             str(port)], cwd=ROOT)
    return serving(proc, port), port


def serving(proc: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """`proc` once it answers GET /status on `port` (within 20 s; else it is killed)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if arun(Http("127.0.0.1", port, False).request("GET", "/api/v1/status"))[0] == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("vmpoolerd did not start")


def report(label: str, result: Result) -> None:
    lat = sorted(result.latencies)
    p50 = statistics.median(lat) * 1000 if lat else 0.0
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
    n = max(1, result.requests)
    cpu, user, system = ((result.user + result.system) / n * 1000, result.user / n * 1000,
                         result.system / n * 1000)
    print(f"{label:<44} {result.requests:>7} {result.requests / result.seconds:>8.0f} {p50:>7.2f} {p99:>7.2f} "
          f"{cpu:>7.3f} {user:>6.3f} {system:>6.3f} {result.redis_cpu / n * 1000:>7.3f} {result.errors:>5}", flush=True)


async def scenarios(port: int, pid: int, redis_url: str, size: int, args: argparse.Namespace,
                    redis_pid: int | None = None) -> None:
    refill = redis.asyncio.Redis.from_url(redis_url)
    steps: dict[str, Step] = {"GET /status": status_step, "checkout+return": cycle_step(refill)}
    for name, step in steps.items():
        if name not in args.workloads:
            continue
        for keep_alive in args.keep_alive:
            for concurrency in args.concurrency:
                await run(port, pid, step, concurrency, keep_alive, 0.3)  # warm-up
                result = await run(port, pid, step, concurrency, keep_alive, args.seconds, redis_pid)
                mode = "keep-alive" if keep_alive else "new conn"
                report(f"{size:>6} ready  {name:<15} {mode:<10} c={concurrency:<2}", result)
    await refill.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,100000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--concurrency", default="1,4,16", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seconds", default=3.0, type=float, help="measured seconds per scenario")
    parser.add_argument("--workloads", default="status,checkout+return",
                        type=lambda s: [{"status": "GET /status"}.get(x, x) for x in s.split(",")])
    parser.add_argument("--connections", default="keep-alive,new", dest="keep_alive",
                        type=lambda s: [x == "keep-alive" for x in s.split(",")],
                        help="keep-alive, new (a new connection per request), or both")
    parser.add_argument("--rate-limits", action="store_true", help="with rate limiting on (limits never reached)")
    parser.add_argument("--demand", action="store_true", help="the pools sized to demand (checkouts counted)")
    parser.add_argument("--durability", default="none", choices=("none", "replica", "aof"))
    parser.add_argument("--replica", action="store_true", help="a replica of the Redis server (implied by replica)")
    parser.add_argument("--appendonly", action="store_true", help="AOF on, whatever the durability (implied by aof)")
    parser.add_argument("--redis-server", default=None,
                        help="the redis-server binary; 'valkey': the valkey-server of the embedded defaults")
    args = parser.parse_args()
    if args.redis_server:
        from vmpoolerd import embedded

        os.environ["VMPOOLER_TEST_REDIS_SERVER"] = (embedded.server_binary() if args.redis_server == "valkey"
                                                    else args.redis_server)
    server = RedisServer(appendonly=args.durability == "aof" or args.appendonly,
                         extra=("--appendfsync", "everysec")).start()
    replica = RedisServer().start() if args.durability == "replica" or args.replica else None
    if replica is not None:
        follower = redis.Redis(port=replica.port, decode_responses=True)
        follower.replicaof("127.0.0.1", server.port)
        deadline = time.monotonic() + 20
        while follower.info("replication").get("master_link_status") != "up":  # in sync before measuring
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
    workdir = tempfile.mkdtemp(prefix="vmpooler-bench-")
    client = redis.Redis.from_url(server.url)
    proc, port = start_daemon(server.url, workdir, args.rate_limits, args.durability, args.demand)
    try:
        version = client.info("server")["redis_version"]
        print(f"redis-server {version}, appendonly {client.config_get('appendonly')['appendonly']}, "
              f"durability {args.durability}")
        print(f"{'':<44} {'':>7} {'':>8} {'latency ms':>15} {'server CPU ms/req':>21} {'redis':>7}")
        print(f"{'ready  workload        connection   conc':<44} {'reqs':>7} {'req/s':>8} {'p50':>7} {'p99':>7} "
              f"{'total':>7} {'user':>6} {'system':>6} {'CPU ms':>7} {'errs':>5}")
        for size in args.sizes:
            fill(client, size)
            arun(scenarios(port, proc.pid, server.url, size, args, server.proc.pid if server.proc else None))
            assert client.scard(K.ready("pool1")) == size, "the ready set did not keep its size"
    finally:
        proc.terminate()
        proc.wait(10)
        client.close()
        server.stop()
        if replica is not None:
            replica.stop()


if __name__ == "__main__":
    main()
