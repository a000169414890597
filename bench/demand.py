"""Fixed pool sizes against pools sized to demand, over synthetic working days replayed through the API.

    python bench/demand.py [--seed 1] [--speed 300] [--fixed 4,8,12,16,24] [--floors 1,2] [--max-size 40]
                           [--clone-minutes 2] [--boot-minutes 1] [--days 2] [--hours 24] [--task-limit 100]
                           [--trace]

`--days` working days one after the other, each drawn with its own seed (`--seed`, then the next ones):
the first without any history, the next ones with the daily profile of the days before. A day (in
simulated minutes; `--speed` simulated seconds per real second, 300 by default: a day lasts 4.8 minutes):
- a quiet night: 0.05 checkouts a minute, and a nightly batch of 6 at 02:00;
- a morning ramp from 06:30 to 09:30, up to 1.2 checkouts a minute, held until 17:00, then an evening
  ramp down to 0.1 a minute by 20:00;
- CI bursts from 09:00 to 18:00, one every 50 minutes on average (Poisson), each 6 to 14 checkouts within
  two minutes;
- every checkout holds its VM 20 minutes (median; lognormal, sigma 0.6, at most 2 hours), then returns it.

Every pool gets the same day, at the same moments: one pool per fixed size (`fixed-<N>`), and one sized to
demand per floor (`demand-<floor>`: `size` the floor, `max_size`), side by side in one pooler
(`vmpoolerd api` and `vmpoolerd manager`, the dummy provider with clones of `--clone-minutes` and boots of
`--boot-minutes`, scaled), each pool starting the day full. A checkout answered 503 is retried every
simulated minute until it gets a VM (or for at most two hours). The `demand:` settings are the defaults
(buckets of a minute, a window of three hours, a day of 24 hours), scaled.

Printed for each day, per pool: checkouts refused (the checkouts whose first try was answered 503, and all the 503s),
VM-hours spent (every VM that exists, sampled every simulated half minute; and of those, the VMs not
checked out: the pool's own cost), the longest and the median wait for a refill (first try to VM, of the
refused ones, simulated minutes); then, for each pool sized to demand, the cheapest fixed size that spent
at least its VM-hours and how many times its refusals that fixed size had; the refusals hour by hour;
the pools sized to demand hour by hour.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer, free_port  # noqa: E402
from vmpooler_core.demand import Target  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402

K = Keys()
RETRY_MINUTES = 1.0
GIVE_UP_MINUTES = 120.0
SAMPLE_MINUTES = 0.5
DAY = 24 * 60  # minutes


@dataclass(frozen=True, slots=True)
class Job:
    at: float  # simulated minutes since 00:00
    hold: float  # simulated minutes the VM is kept


def rate(minute: float) -> float:
    """Checkouts a minute outside the bursts."""
    hour = minute / 60
    if hour < 6.5:
        return 0.05
    if hour < 9.5:
        return 0.05 + (1.2 - 0.05) * (hour - 6.5) / 3
    if hour < 17:
        return 1.2
    if hour < 20:
        return 1.2 - (1.2 - 0.1) * (hour - 17) / 3
    return 0.1 if hour < 22 else 0.05


def day(seed: int, hours: float = 24.0) -> list[Job]:
    rng = random.Random(seed)
    end = hours * 60
    starts: list[float] = []
    minute = 0.0
    while minute < end:  # a Poisson process of varying rate, by thinning
        minute += rng.expovariate(1.2)
        if minute < end and rng.random() < rate(minute) / 1.2:
            starts.append(minute)
    starts += [120 + rng.uniform(0, 2) for _ in range(6)]  # the nightly batch
    burst = 9 * 60 + rng.expovariate(1 / 50)
    while burst < 18 * 60:
        starts += [burst + rng.uniform(0, 2) for _ in range(rng.randint(6, 14))]
        burst += rng.expovariate(1 / 50)
    return sorted((Job(at, min(120.0, rng.lognormvariate(math.log(20), 0.6))) for at in starts if at < end),
                  key=lambda job: job.at)


@dataclass
class Tally:
    refused: int = 0  # checkouts whose first try was refused
    refused_by_hour: dict[int, int] = field(default_factory=dict)
    answers_503: int = 0
    served: int = 0
    waits: list[float] = field(default_factory=list)  # simulated minutes, of the refused ones that got a VM
    gave_up: int = 0
    vm_minutes: float = 0.0
    idle_minutes: float = 0.0  # of VMs not checked out


class Replay:
    """Replays the jobs (their minutes counted from the first day's 00:00) on every pool."""

    def __init__(self, port: int, redis_url: str, pools: list[str], days: int, speed: float) -> None:
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30,
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.redis = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        self.pools = pools
        self.speed = speed
        self.tally = {(day, pool): Tally() for day in range(days) for pool in pools}
        self.targets: dict[int, dict[str, str]] = {}  # simulated hour -> demand pool -> "ready/target"
        self.start = 0.0
        self.errors: list[str] = []
        self.trace = False

    def minutes(self) -> float:
        return (time.monotonic() - self.start) * self.speed / 60

    async def until(self, minute: float) -> None:
        await asyncio.sleep(max(0.0, self.start + minute * 60 / self.speed - time.monotonic()))

    async def job(self, pool: str, job: Job) -> None:
        await self.until(job.at)
        tally = self.tally[int(job.at // DAY), pool]
        tries = 0
        while True:
            try:
                response = await self.http.post(f"/vm/{pool}")
            except httpx.TransportError as err:
                self.errors.append(f"{pool}: checkout failed: {err!r}")
                return
            tries += 1
            if response.status_code == 200:
                break
            if response.status_code != 503:
                self.errors.append(f"{pool}: checkout answered {response.status_code}: {response.text[:200]}")
                return
            tally.answers_503 += 1
            if tries == 1:
                tally.refused += 1
                hour = int(job.at % DAY // 60)
                tally.refused_by_hour[hour] = tally.refused_by_hour.get(hour, 0) + 1
            if self.minutes() - job.at >= GIVE_UP_MINUTES:
                tally.gave_up += 1
                return
            await asyncio.sleep(RETRY_MINUTES * 60 / self.speed)
        tally.served += 1
        if tries > 1:
            tally.waits.append(self.minutes() - job.at)
        hostname = response.json()[pool]["hostname"]
        await self.until(job.at + job.hold)
        try:
            returned = await self.http.delete(f"/vm/{hostname}")
        except httpx.TransportError:  # a keep-alive connection the loaded API closed as it was reused
            returned = await self.http.delete(f"/vm/{hostname}")
        if returned.status_code != 200:
            self.errors.append(f"{pool}: return answered {returned.status_code}: {returned.text[:200]}")

    async def sample(self, end: float) -> None:
        """VM-minutes spent, a sample every SAMPLE_MINUTES; and each demand pool's figures each hour."""
        sized = [pool for pool in self.pools if pool.startswith("demand")]
        while self.minutes() < end:
            pipe = self.redis.pipeline(transaction=False)
            for pool in self.pools:
                pipe.hlen(K.dummy_folder("dummy", pool))
                pipe.scard(K.running(pool))
                pipe.scard(K.ready(pool))
            pipe.hmget(K.sizing(), sized)
            *figures, sizing = await pipe.execute()
            counts = {pool: figures[3 * index:3 * index + 3] for index, pool in enumerate(self.pools)}
            day = int(self.minutes() // DAY)
            for pool, (vms, running, _) in counts.items():
                self.tally[day, pool].vm_minutes += vms * SAMPLE_MINUTES
                self.tally[day, pool].idle_minutes += max(0, vms - running) * SAMPLE_MINUTES
            targets = dict(zip(sized, (Target.from_json(raw) for raw in sizing), strict=True))
            if self.trace:
                print(f"{self.minutes():7.1f} min  " + "; ".join(
                    f"{pool}: {counts[pool][0]} VMs, {counts[pool][2]} ready, {target.to_json() if target else '-'}"
                    for pool, target in targets.items()))
            hour = int(self.minutes() // 60)
            if hour not in self.targets:
                self.targets[hour] = {pool: f"{counts[pool][2]}/{target.size if target else '-'}"
                                      for pool, target in targets.items()}
            await self.until(self.minutes() + SAMPLE_MINUTES)

    async def run(self, jobs: list[Job], end: float) -> None:
        self.start = time.monotonic()
        work = [self.job(pool, job) for pool in self.pools for job in jobs]
        await asyncio.gather(self.sample(end), *work)
        await self.http.aclose()
        await self.redis.aclose()


def config_text(redis_url: str, args: argparse.Namespace) -> str:
    scale = 60 / args.speed  # real seconds per simulated minute
    pools = "".join(f"  - {{name: fixed-{n}, size: {n}}}\n" for n in args.fixed)
    pools += "".join(f"  - {{name: demand-{n}, size: {n}, max_size: {args.max_size}}}\n" for n in args.floors)
    return f"""redis: {{url: '{redis_url}'}}
config:
  log_level: WARNING
  task_limit: {args.task_limit}
  manager_loop_seconds: {0.5 * scale:g}
  vm_checktime: 10
  manager_lease_seconds: 10
providers:
  dummy: {{clone_time: {args.clone_minutes * scale:g}, boot_time: {args.boot_minutes * scale:g}}}
demand: {{bucket_seconds: {scale:g}, window_seconds: {180 * scale:g}, day_seconds: {1440 * scale:g}}}
pools:
{pools}"""


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "vmpoolerd", *args], cwd=ROOT, stdout=out, stderr=out)


def wait_full(client: redis.Redis, sizes: dict[str, int], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while any(client.scard(K.ready(pool)) < size for pool, size in sizes.items()):
        if time.monotonic() > deadline:
            raise RuntimeError("the pools did not fill")
        time.sleep(0.1)


def report(replay: Replay, day: int, jobs: list[Job], args: argparse.Namespace) -> None:
    count = sum(1 for job in jobs if int(job.at // DAY) == day)
    history = "no history" if day == 0 else f"after {day} day{'s' if day > 1 else ''} of history"
    print(f"\nday {day + 1} ({history}): {count} checkouts per pool (seed {args.seed + day}, speed "
          f"{args.speed:g}x, clone {args.clone_minutes:g} + boot {args.boot_minutes:g} min)")
    print(f"{'pool':<12} {'refused':>8} {'503s':>6} {'gave up':>8} {'VM-hours':>9} {'idle VM-h':>10} "
          f"{'longest wait':>13} {'median wait':>12}")
    for pool in replay.pools:
        t = replay.tally[day, pool]
        longest = f"{max(t.waits):.1f} min" if t.waits else "-"
        median = f"{statistics.median(t.waits):.1f} min" if t.waits else "-"
        print(f"{pool:<12} {t.refused:>8} {t.answers_503:>6} {t.gave_up:>8} {t.vm_minutes / 60:>9.1f} "
              f"{t.idle_minutes / 60:>10.1f} {longest:>13} {median:>12}")
    fixed = [pool for pool in replay.pools if pool.startswith("fixed")]
    for pool in replay.pools:
        if pool in fixed:
            continue
        sized = replay.tally[day, pool]
        cheapest = [name for name in fixed if replay.tally[day, name].vm_minutes >= sized.vm_minutes]
        if not cheapest:
            print(f"{pool}: no fixed size spent as many VM-hours ({sized.vm_minutes / 60:.1f})")
            continue
        other = replay.tally[day, cheapest[0]]
        ratio = f"{other.refused / sized.refused:.1f}x" if sized.refused else "all"
        print(f"{pool}: {sized.vm_minutes / 60:.1f} VM-h, {sized.refused} refused; the cheapest fixed size spending at "
              f"least as much, {cheapest[0]}: {other.vm_minutes / 60:.1f} VM-h, {other.refused} refused: {ratio} fewer "
              "refusals")
    print("refused by hour:")
    for pool in replay.pools:
        by_hour = replay.tally[day, pool].refused_by_hour
        print(f"  {pool:<10} " + " ".join(f"{by_hour.get(hour, 0):>3}" for hour in range(math.ceil(args.hours))))
    print("pools sized to demand by hour (ready/target at the hour's start):")
    for pool in replay.pools:
        if pool not in fixed:
            print(f"  {pool:<10} " + " ".join(f"{hour % 24:02d}h {figures.get(pool, '-')}"
                                              for hour, figures in sorted(replay.targets.items())
                                              if hour // 24 == day))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=300.0, help="simulated seconds per real second")
    parser.add_argument("--fixed", default="4,8,12,16,24", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--floors", default="1,2", type=lambda s: [int(x) for x in s.split(",")],
                        help="a pool sized to demand for each of these floors (`size`)")
    parser.add_argument("--max-size", type=int, default=40)
    parser.add_argument("--clone-minutes", type=float, default=2.0)
    parser.add_argument("--boot-minutes", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=2, help="days replayed one after the other (seeds seed, seed+1...)")
    parser.add_argument("--hours", type=float, default=24.0, help="replay only the first hours of each day")
    parser.add_argument("--task-limit", type=int, default=100)
    parser.add_argument("--trace", action="store_true", help="print the demand pool's figures at every sample")
    args = parser.parse_args()
    jobs = [Job(d * DAY + job.at, job.hold) for d in range(args.days) for job in day(args.seed + d, args.hours)]
    server = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="vmpooler-demand-"))
    config = workdir / "vmpooler.yaml"
    config.write_text(config_text(server.url, args))
    port = free_port()
    api = start(["api", "--config", str(config), "--port", str(port)], workdir / "api.log")
    manager = start(["manager", "--config", str(config)], workdir / "manager.log")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    pools = [f"fixed-{n}" for n in args.fixed] + [f"demand-{n}" for n in args.floors]
    try:
        wait_full(client, {**{f"fixed-{n}": n for n in args.fixed}, **{f"demand-{n}": n for n in args.floors}})
        replay = Replay(port, server.url, pools, args.days, args.speed)
        replay.trace = args.trace
        asyncio.run(replay.run(jobs, (args.days - 1) * DAY + args.hours * 60))
        for number in range(args.days):
            report(replay, number, jobs, args)
        if replay.errors:
            print(f"\n{len(replay.errors)} unexpected answers, the first: {replay.errors[0]}")
    finally:
        for proc in (api, manager):
            proc.terminate()
            proc.wait(20)
        client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
