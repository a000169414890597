"""A bounded soak run: three vmpoolerd daemons, one Redis, the vCenter simulator, 32 clients and faults.

    python bench/soak.py [--seconds 120] [--clients 32] [--seed N] [--workdir DIR]
                         [--redis-fault kill|shutdown] [--durability none|aof] [--redis-server PATH|valkey]
                         [--slow-fsync-ms N]

Set-up (all of it stopped at the end, on failure too): a redis-server with AOF on (appendfsync everysec;
`--redis-server valkey` runs the valkey-server of the embedded defaults, a Redis 7.2+ that has WAITAOF,
which `--durability aof` needs; `--slow-fsync-ms N` makes each of its fsyncs N ms longer, as on a disk busy
with other writes: bench/slow_fsync.c, built with cc and preloaded); the govmomi simulator of
tests/vcsim with one template and a folder per pool, clones taking 400 ms; three `vmpoolerd all`
processes on free ports sharing a configuration of four vSphere pools (sizes 6-8; the alias `el` names two
of them), one-second passes and four-second leases.

For `--seconds`, 32 asyncio clients (httpx), spread over the daemons, check out (by pool name, by alias, by
the shared alias, one to three VMs, sometimes several pools in one request), change lifetimes and return
VMs at random, retrying connection errors and 503s with a small backoff. Meanwhile: a random daemon is
killed with SIGKILL every few seconds and started again on its port; Redis is killed once (`kill -9`,
or with `--redis-fault shutdown` a SHUTDOWN, which flushes the AOF) and started again on the same port and
directory, on what its AOF kept; and the simulator is stopped with SIGSTOP for 20 s once (a hung vCenter,
not a dead one: a restarted simulator would keep no state).

As soon as Redis answers again, the checker compares what the clients were told with what Redis kept:
every VM a client holds (its checkout answered 200, no return under way) must still be `running`. One
that is not is an acknowledged checkout that Redis lost: its VM is back in `ready`, for another client.

At the end the clients return every VM they hold; VMs whose checkout answer was lost (the daemon died, or
Redis went away mid-request) are still `running` in Redis, and the checker returns them through the API
and counts them. The daemons are left to settle within a bound, then the checker verifies, with a pyvmomi
session of its own and Redis:

- no acknowledged checkout was lost by the Redis kill (above);
- no hostname was ever held by two clients at once, nor handed out twice at all (client-side ledger);
- every VM in a pool folder of the simulator is in exactly one state set of its pool, and every VM in a
  state set exists in the simulator;
- every VM the simulator ever created is in a folder now or is marked destroyed in its Redis hash (the
  simulator's clone counter balances, and so does every name seen in a folder during the run);
- every `vmpooler__vm__*` hash not in a set is marked destroyed or expires;
- every pool is back to its size (ready + pending == size), and was never over-filled.

It prints the figures (checkouts, VMs handed out, returns, errors by kind, recovery time after each
fault, daemon kills) and exits 0 when nothing was lost or handed out twice and every check passed.
tests/soak/test_soak.py runs the same code for about a minute in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from bench.soak_audit import Audit, Sampler, acknowledged_lost, audit  # noqa: E402
from bench.soak_clients import Client, Ledger  # noqa: E402
from bench.soak_setup import (  # noqa: E402
    KEEP_MARKER,
    POOLS,
    TEMPLATE,
    Daemon,
    K,
    SoakRedis,
    SoakSettings,
    config_text,
    kill_redis,
    restart_redis,
)
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.vcsim.server import VcsimServer  # noqa: E402
from vmpoolerd import embedded  # noqa: E402

# Faults ------------------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str  # "daemon", "redis", "vcenter"
    started: float  # monotonic
    ended: float = 0.0  # the fault is over: daemon started again, Redis answering, simulator continued
    daemon: int | None = None
    serving_at: float | None = None  # a restarted daemon answers HTTP again


class Faults:
    def __init__(self, settings: SoakSettings, daemons: list[Daemon], server: RedisServer, sim: VcsimServer,
                 rng: random.Random, say: Any, redis_back: Any) -> None:
        self.settings = settings
        self.daemons = daemons
        self.server = server
        self.sim = sim
        self.rng = rng
        self.say = say
        self.done: list[Fault] = []
        self.up = {d.index for d in daemons}  # serving, so fair game for the next kill
        self.redis_back = redis_back  # called as soon as Redis answers again after its fault
        self._restarts: set[asyncio.Task[None]] = set()

    async def run(self, started: float) -> None:
        seconds = self.settings.seconds
        # Redis early, the vCenter stop in the middle, with time after it for the recovery to show.
        redis_at = started + 0.2 * seconds
        vcenter_at = started + max(0.3 * seconds, min(0.45 * seconds, seconds - self.settings.vcenter_stop - 15))
        end = started + seconds
        next_kill = started + self.rng.uniform(*self.settings.kill_every)
        vcenter: asyncio.Task[None] | None = None
        redis_done = False
        while time.monotonic() < end:
            now = time.monotonic()
            if not redis_done and now >= redis_at:
                redis_done = True
                await self._restart_redis()
            elif vcenter is None and now >= vcenter_at:
                vcenter = asyncio.create_task(self._stop_vcenter())
            elif now >= next_kill and now < end - 2:
                await self._kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*self.settings.kill_every)
            await asyncio.sleep(0.05)
        if vcenter is not None:
            await vcenter
        if self._restarts:
            await asyncio.gather(*self._restarts)

    async def _kill_one(self) -> None:
        if len(self.up) < 2:
            return  # never all of them at once: the run is about carrying on, not about an outage
        daemon = self.daemons[self.rng.choice(sorted(self.up))]
        self.up.discard(daemon.index)
        fault = Fault("daemon", time.monotonic(), daemon=daemon.index)
        await asyncio.to_thread(daemon.kill)
        daemon.start()
        fault.ended = time.monotonic()
        self.done.append(fault)
        self.say(f"killed daemon {daemon.index} (kill #{sum(f.kind == 'daemon' for f in self.done)}), restarted")
        task = asyncio.create_task(self._await_serving(daemon, fault))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _await_serving(self, daemon: Daemon, fault: Fault) -> None:
        if await asyncio.to_thread(daemon.wait_serving, 30.0):
            fault.serving_at = time.monotonic()
            self.up.add(daemon.index)
        else:
            self.say(f"daemon {daemon.index} did not serve again within 30 s:\n{daemon.log_tail()}")

    async def _restart_redis(self) -> None:
        kill = self.settings.redis_fault == "kill"
        self.say("redis: kill -9" if kill else "redis: SHUTDOWN")
        went_down, back = await asyncio.to_thread(kill_redis if kill else restart_redis, self.server,
                                                  self.settings.redis_down)
        self.redis_back()  # at once, in the clients' event loop: no answer comes in meanwhile
        self.done.append(Fault("redis", went_down, back))
        self.say(f"redis: back after {back - went_down:.1f} s")

    async def _stop_vcenter(self) -> None:
        assert self.sim.proc is not None
        pid = self.sim.proc.pid
        self.say(f"vcenter: SIGSTOP for {self.settings.vcenter_stop:.0f} s")
        fault = Fault("vcenter", time.monotonic())
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.settings.vcenter_stop)
        finally:
            os.kill(pid, signal.SIGCONT)
        fault.ended = time.monotonic()
        self.done.append(fault)
        self.say("vcenter: SIGCONT")


# The run -------------------------------------------------------------------------------------------

def _seconds(value: float | None, suffix: str = "") -> str:
    return "never" if value is None else f"{value:.1f} s{suffix}"


@dataclass
class SoakResult:
    settings: SoakSettings
    ledger: Ledger
    faults: list[Fault]
    audit: Audit
    orphans: int  # running VMs no client knew of (lost answers), returned by the checker
    clients_seconds: float
    refill_seconds: float | None  # clients stopped -> every pool at ready + pending == size
    settle_seconds: float | None  # clients stopped -> the audit passed
    peak: dict[str, int]
    workdir: Path
    daemon_exits: list[int | None] = field(default_factory=list)
    clients_started: float = 0.0  # monotonic: fault times are printed relative to it
    acknowledged_lost: list[str] = field(default_factory=list)  # held VMs Redis no longer had after its fault
    held_at_fault: int = 0  # VMs the clients held when Redis came back (what was checked)
    redis_version: str = ""

    @property
    def handed_twice(self) -> int:
        return len(self.ledger.twice)

    @property
    def double_handed(self) -> int:
        return len(self.ledger.violations)

    @property
    def lost(self) -> int:
        return len(self.audit.lost)

    @property
    def overfilled(self) -> list[str]:
        return [p.name for p in POOLS if self.peak.get(p.name, 0) > p.size]

    @property
    def passed(self) -> bool:
        return (not self.double_handed and not self.lost and self.audit.ok and not self.overfilled
                and self.settle_seconds is not None and not self.ledger.anomalies and not self.acknowledged_lost)

    def of_kind(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]

    def recovery(self, fault: Fault, daemon: int | None = None) -> float | None:
        """Seconds from the fault's end to the end of the first successful checkout sent after it (served
        by `daemon`, or by any); None when none succeeded before the clients stopped."""
        after = [done for sent, done, d in self.ledger.successes
                 if sent >= fault.ended and (daemon is None or d == daemon)]
        return min(after) - fault.ended if after else None

    def served_during(self, fault: Fault) -> int:
        return sum(fault.started <= sent and done <= fault.ended for sent, done, _ in self.ledger.successes)

    def report(self) -> str:
        ledger, audit = self.ledger, self.audit
        lines = [f"soak: {self.clients_seconds:.0f} s, {self.settings.clients} clients, "
                 f"{self.settings.daemons} daemons, {len(POOLS)} pools ({sum(p.size for p in POOLS)} VMs), "
                 f"seed {self.settings.seed}; {self.redis_version}, durability {self.settings.durability}"
                 + (f", each fsync {self.settings.slow_fsync_ms} ms longer" if self.settings.slow_fsync_ms else ""),
                 f"  checkouts done         {ledger.checkouts}",
                 f"  VMs handed out         {ledger.vms_handed}",
                 f"  returns                {ledger.returns}",
                 f"  lifetime changes       {ledger.lifetimes}",
                 f"  in-doubt checkouts     {ledger.in_doubt_checkouts} (answer lost; up to {ledger.in_doubt_vms} "
                 "VMs may have been taken)",
                 f"  orphans returned       {self.orphans} (running VMs no client had been told of)",
                 f"  given up after 6 s     {dict(ledger.gave_up) or 0} (requests still failing after retries)",
                 "  errors by kind (failed attempts, each retried):"]
        lines += [f"    {kind:<32} {count}" for kind, count in sorted(ledger.errors.items())] or ["    none"]
        lines += self._fault_lines()
        lines += [f"  pools back to size     {_seconds(self.refill_seconds, ' after the clients stopped')}",
                  f"  settled and audited    {_seconds(self.settle_seconds, ' after the clients stopped')}",
                  f"  VMs created            {audit.created} (simulator); {audit.destroyed} destroyed, "
                  f"{audit.in_folders} in the pools now; {audit.hashes} VM hashes in Redis",
                  f"  peak ready+pending     {self.peak} (sizes {({p.name: p.size for p in POOLS})})",
                  f"  daemon exit codes      {self.daemon_exits} (SIGTERM at the end)",
                  f"  unexpected answers     {len(ledger.anomalies)} (neither 2xx, nor 503, nor a 404 after a "
                  "lost answer)",
                  f"  LOST VMs               {self.lost}",
                  f"  ACKNOWLEDGED CHECKOUTS LOST  {len(self.acknowledged_lost)} (of {self.held_at_fault} VMs the "
                  "clients held when Redis came back, those it no longer had as running)",
                  f"  VMs HANDED OUT TWICE   {self.handed_twice}",
                  f"  ledger violations      {self.double_handed} (double hand-outs, and held VMs taken away)"]
        lines += [f"    ! acknowledged checkout lost: {host}" for host in self.acknowledged_lost[:10]]
        lines += [f"    ! {line}" for line in (ledger.violations + audit.lost + audit.problems)[:30]]
        lines += [f"    ? {line}" for line in ledger.anomalies[:10]]
        kept = f" (logs in {self.workdir})" if self.workdir.exists() else ""
        lines.append(f"  verdict                {'PASS' if self.passed else 'FAIL'}{kept}")
        return "\n".join(lines)

    def _fault_lines(self) -> list[str]:
        kills = self.of_kind("daemon")
        lines = [f"  daemon kills           {len(kills)} (kill -9, restarted at once on the same port)"]
        starts = [f.serving_at - f.ended for f in kills if f.serving_at is not None]
        if starts:
            lines.append(f"    restart -> serving HTTP            median {statistics.median(starts):.2f} s, "
                         f"max {max(starts):.2f} s")
        for label, daemon in (("it served", True), ("anywhere", False)):
            found = [self.recovery(f, f.daemon if daemon else None) for f in kills]
            known = [r for r in found if r is not None]
            if known:
                lines.append(f"    restart -> first checkout {label:<9} median {statistics.median(known):.2f} s, "
                             f"max {max(known):.2f} s ({len(found) - len(known)} with none before the end)")
        each = [f"+{f.started - self.clients_started:.0f}s d{f.daemon} "
                f"{_seconds(self.recovery(f, f.daemon)).replace(' s', 's')}" for f in kills]
        lines += ["    each kill (when, daemon, restart -> first checkout through it):"]
        lines += ["      " + ", ".join(each[i:i + 6]) for i in range(0, len(each), 6)]
        redis = "redis kill -9, AOF" if self.settings.redis_fault == "kill" else "redis restart (SHUTDOWN+AOF)"
        for kind, label in (("redis", redis), ("vcenter", "vcenter stopped (SIGSTOP)")):
            for fault in self.of_kind(kind):
                recovery = self.recovery(fault)
                lines.append(f"  {label:<29} at +{fault.started - self.clients_started:.0f} s, down "
                             f"{fault.ended - fault.started:.1f} s, {self.served_during(fault)} checkouts served "
                             f"meanwhile; checkouts succeed again {_seconds(recovery, ' after it ended')}")
        return lines


@contextlib.contextmanager
def _workdir(settings: SoakSettings) -> Iterator[Path]:
    """The given directory, or a new temporary one, removed unless the run raised or failed (then its
    logs are what one reads next)."""
    if settings.workdir is not None:
        settings.workdir.mkdir(parents=True, exist_ok=True)
        yield settings.workdir
        return
    path = Path(tempfile.mkdtemp(prefix="vmpooler-soak-"))
    yield path
    if not (path / KEEP_MARKER).exists():
        shutil.rmtree(path, ignore_errors=True)


def _wait(condition: Any, seconds: float, what: str, interval: float = 0.2) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"soak set-up: {what} not reached within {seconds:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


def _full(r: redis.Redis) -> bool:
    return all(r.scard(K.ready(p.name)) + r.scard(K.pending(p.name)) == p.size for p in POOLS)


def _return_orphans(r: redis.Redis, daemons: list[Daemon]) -> int:
    """Return, through the API, every VM still running once the clients have returned theirs: a checkout
    whose answer was lost. Bounded: a few tries per VM over the daemons."""
    orphans = {host for p in POOLS for host in r.smembers(K.running(p.name))}
    for host in sorted(orphans):
        for attempt in range(20):
            daemon = daemons[attempt % len(daemons)]
            try:
                status = httpx.delete(f"{daemon.url}/api/v1/vm/{host}", timeout=5).status_code
            except httpx.HTTPError:
                status = None
            if status in (200, 404):
                break
            time.sleep(0.2)
    return len(orphans)


@dataclass
class Rig:
    """Everything the run started; `stack` stops all of it."""

    server: SoakRedis
    sim: VcsimServer
    config: Path
    daemons: list[Daemon]
    redis: redis.Redis
    fill_seconds: float


def _start(settings: SoakSettings, workdir: Path, stack: contextlib.ExitStack) -> Rig:
    (workdir / "redis").mkdir(exist_ok=True)
    server = SoakRedis(str(workdir / "redis"), settings.redis_server, settings.slow_fsync_ms)
    server.start()
    stack.callback(server.stop)
    sim = VcsimServer(templates=[TEMPLATE], folders=[p.folder for p in POOLS],
                      clone_delay_ms=settings.clone_delay_ms).start()

    def stop_sim() -> None:
        if sim.proc is not None and sim.proc.poll() is None:
            os.kill(sim.proc.pid, signal.SIGCONT)  # a stopped process would not act on SIGTERM
        sim.stop()

    stack.callback(stop_sim)
    config = workdir / "vmpooler.yaml"
    config.write_text(config_text(server.url, sim, settings.durability))
    daemons = [Daemon(i, config, free_port(), workdir / f"daemon{i}.log") for i in range(settings.daemons)]
    for daemon in daemons:
        stack.callback(daemon.kill)  # whatever happens, no daemon outlives the run
        daemon.start()
    for daemon in daemons:
        if not daemon.wait_serving(60):
            raise RuntimeError(f"daemon {daemon.index} did not start:\n{daemon.log_tail()}")
    r = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5)
    stack.callback(r.close)
    took = _wait(lambda: all(r.scard(K.ready(p.name)) == p.size for p in POOLS), 90, "pools filled")
    return Rig(server, sim, config, daemons, r, took)


def _settle(rig: Rig, sampler: Sampler, bound: float) -> tuple[Audit, float | None, float | None]:
    """Poll the audit until it passes or `bound` seconds are over. A real loss never heals, so the polling
    only waits out the pooler's own work (destroys of returned VMs, refills)."""
    stopped = time.monotonic()
    refill: float | None = None
    for _ in range(int(bound) + 1):
        check = audit(rig.redis, sampler.provider, rig.sim, dict(sampler.seen))
        now = time.monotonic()
        if refill is None and _full(rig.redis):
            refill = now - stopped
        if check.ok:
            return check, refill, now - stopped
        if now - stopped > bound:
            break
        time.sleep(1.0)
    return check, refill, None


def run_soak(settings: SoakSettings) -> SoakResult:
    if settings.seed is None:
        settings.seed = random.randrange(1 << 30)
    rng = random.Random(settings.seed)

    def say(message: str) -> None:
        if not settings.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    with _workdir(settings) as workdir, contextlib.ExitStack() as stack:
        rig = _start(settings, workdir, stack)
        say(f"set-up done: {settings.daemons} daemons, pools filled in {rig.fill_seconds:.1f} s; "
            f"running {settings.seconds:.0f} s with {settings.clients} clients")
        sampler = stack.enter_context(Sampler(rig.config, rig.server.url))
        ledger = Ledger()
        lost: list[str] = []
        held: list[int] = []

        def redis_back() -> None:
            held.append(len(set(ledger.holders) - ledger.returning))
            lost.extend(acknowledged_lost(rig.redis, ledger))

        faults = Faults(settings, rig.daemons, rig.server, rig.sim, rng, say, redis_back)

        started = time.monotonic()

        async def load_phase() -> float:
            stop = asyncio.Event()
            clients = [Client(i, rig.daemons, ledger, random.Random(rng.random())) for i in range(settings.clients)]
            tasks = [asyncio.create_task(c.run(stop)) for c in clients]
            try:
                await faults.run(started)
            finally:
                stop.set()
                ran = time.monotonic() - started
                # Bounded: a client ends its current request (6 s at most) and returns what it holds.
                await asyncio.wait_for(asyncio.gather(*tasks), 240)
            return ran

        ran = asyncio.run(load_phase())
        say(f"clients stopped after {ran:.0f} s; {len(ledger.holders)} VMs still held")
        orphans = _return_orphans(rig.redis, rig.daemons)
        check, refill, settled = _settle(rig, sampler, settings.settle_seconds)
        say("audit " + ("passed" if check.ok else "FAILED"))
        exits = [daemon.stop() for daemon in rig.daemons]
        result = SoakResult(settings, ledger, faults.done, check, orphans, ran, refill, settled,
                            dict(sampler.peak), workdir, exits, started, lost, sum(held), rig.server.version())
        if not result.passed:
            (workdir / KEEP_MARKER).touch()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the client phase")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and data here")
    parser.add_argument("--settle-seconds", type=float, default=90.0)
    parser.add_argument("--redis-fault", choices=("kill", "shutdown"), default="kill",
                        help="kill -9 (default), or SHUTDOWN, which flushes the AOF first")
    parser.add_argument("--durability", choices=("none", "aof"), default="none", help="the daemons' redis: durability")
    parser.add_argument("--redis-server", default=None,
                        help="the redis-server binary; 'valkey': the valkey-server of the embedded defaults")
    parser.add_argument("--slow-fsync-ms", type=int, default=0, help="each of Redis's fsyncs this much longer")
    args = parser.parse_args()
    server = embedded.server_binary() if args.redis_server == "valkey" else args.redis_server
    if args.seconds < 45:
        parser.error("--seconds must be at least 45 (the vCenter stop alone is 20 s)")
    result = run_soak(SoakSettings(seconds=args.seconds, clients=args.clients, seed=args.seed,
                                   workdir=args.workdir, settle_seconds=args.settle_seconds,
                                   redis_fault=args.redis_fault, durability=args.durability, redis_server=server,
                                   slow_fsync_ms=args.slow_fsync_ms))
    print(result.report())
    print(json.dumps({"passed": result.passed, "lost": result.lost, "double_handed": result.double_handed,
                      "acknowledged_lost": len(result.acknowledged_lost), "handed_twice": result.handed_twice}))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

