"""A bounded soak run: three vmpoolerd daemons, one Redis, the vCenter simulator, 32 clients and faults.

    python bench/soak.py [--seconds 120] [--clients 32] [--seed N] [--workdir DIR]

Set-up (all of it stopped at the end, on failure too): a redis-server with AOF on; the govmomi simulator of
tests/vcsim with one template and a folder per pool, clones taking 400 ms; three `vmpoolerd all`
processes on free ports sharing a configuration of four vSphere pools (sizes 6-8; the alias `el` names two
of them), one-second passes and four-second leases.

For `--seconds`, 32 asyncio clients (httpx), spread over the daemons, check out (by pool name, by alias, by
the shared alias, one to three VMs, sometimes several pools in one request), change lifetimes and return
VMs at random, retrying connection errors and 503s with a small backoff. Meanwhile: a random daemon is
killed with SIGKILL every few seconds and started again on its port; Redis is shut down once (SHUTDOWN:
the AOF is flushed) and started again on the same port and directory; and the simulator is stopped with
SIGSTOP for 20 s once (a hung vCenter, not a dead one: a restarted simulator would keep no state).

At the end the clients return every VM they hold; VMs whose checkout answer was lost (the daemon died, or
Redis went away mid-request) are still `running` in Redis, and the checker returns them through the API
and counts them. The daemons are left to settle within a bound, then the checker verifies, with a pyvmomi
session of its own and Redis:

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
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.vcsim.server import VcsimServer  # noqa: E402
from vmpooler_core.config_loader import load  # noqa: E402
from vmpooler_core.keys import STATES, Keys  # noqa: E402
from vmpooler_core.provider import ProviderError  # noqa: E402

K = Keys()
TEMPLATE = "templates/soak-template"
KEEP_MARKER = ".keep"  # in a temporary workdir: keep it, the run failed


@dataclass(frozen=True)
class PoolSpec:
    name: str
    size: int
    aliases: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"vmpooler/{self.name}"


# `el` names two pools: a request for it may be served from either.
POOLS = (PoolSpec("centos-7", 8, ("centos", "el")), PoolSpec("rocky-8", 8, ("rocky", "el")),
         PoolSpec("debian-12", 6, ("debian",)), PoolSpec("ubuntu-24", 6, ("ubuntu",)))


def candidates() -> dict[str, set[str]]:
    """Requestable name -> the pools that may serve it."""
    names: dict[str, set[str]] = {}
    for pool in POOLS:
        names.setdefault(pool.name, set()).add(pool.name)
        for alias in pool.aliases:
            names.setdefault(alias, set()).add(pool.name)
    return names


@dataclass
class SoakSettings:
    seconds: float = 120.0
    clients: int = 32
    daemons: int = 3
    seed: int | None = None
    workdir: Path | None = None  # logs, configuration, Redis data; a temporary directory when None
    clone_delay_ms: int = 400
    kill_every: tuple[float, float] = (3.0, 6.0)  # seconds between daemon kills, drawn uniformly
    redis_down: float = 2.0  # seconds Redis stays down
    vcenter_stop: float = 20.0  # seconds the simulator stays stopped
    settle_seconds: float = 60.0  # bound on the settling after the clients stopped
    quiet: bool = False  # no progress lines


def config_text(redis_url: str, sim: VcsimServer) -> str:
    pools = "".join(
        f"  - name: {p.name}\n    alias: [{', '.join(p.aliases)}]\n    size: {p.size}\n"
        f"    template: {TEMPLATE}\n    folder: {p.folder}\n    provider: vsphere\n" for p in POOLS)
    # Short passes and leases so that take-overs and recoveries fit a run of minutes; `timeout` (minutes)
    # bounds a pending VM, the provider's `timeout` (seconds) each vSphere call, so a stopped vCenter is
    # an error within seconds rather than a hang.
    return f"""redis:
  url: '{redis_url}'
  socket_timeout: 2
config:
  domain: soak.test
  prefix: soak-
  task_limit: 8
  timeout: 1
  vm_checktime: 0
  vm_lifetime: 2
  max_lifetime_upper_limit: 12
  manager_loop_seconds: 1
  manager_lease_seconds: 4
  manager_backoff_max: 2
providers:
  vsphere:
    server: {sim.host}
    port: {sim.port}
    username: {sim.user}
    password: {sim.password}
    insecure: true
    timeout: 5
    clone_timeout: 30
    ready_check: hostname
pools:
{pools}"""


# Processes ---------------------------------------------------------------------------------------

class Daemon:
    """One `vmpoolerd all` process on a fixed port; killed with SIGKILL and started again on that port."""

    def __init__(self, index: int, config: Path, port: int, log: Path) -> None:
        self.index = index
        self.config = config
        self.port = port
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            log.write(f"=== soak: start {self.starts} of daemon {self.index}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmpoolerd", "all", "--config", str(self.config), "--port", str(self.port),
                 "--log-level", "INFO"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def serving(self) -> bool:
        try:
            return httpx.get(self.url + "/api/v1/status", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_serving(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.serving():
                return True
            time.sleep(0.05)
        return False

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, as a supervisor would; SIGKILL after `grace`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def restart_redis(server: RedisServer, down: float) -> tuple[float, float]:
    """SHUTDOWN (the AOF is fsynced), `down` seconds of outage, start again on the same port and directory.
    Returns (monotonic time it went down, time it answered again)."""
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        client.shutdown()  # returns when the server closed the connection
    finally:
        client.close()
    assert server.proc is not None
    server.proc.wait(15)
    went_down = time.monotonic()
    time.sleep(down)
    server.start()  # same port, same --dir, appendonly: it loads the AOF
    return went_down, time.monotonic()


# The clients' ledger ------------------------------------------------------------------------------

@dataclass
class Ledger:
    """What the clients saw; one event loop, so no locks. `holders` is the double-hand-out check."""

    holders: dict[str, int] = field(default_factory=dict)  # host -> client holding it
    handed: set[str] = field(default_factory=set)  # every host ever handed out
    violations: list[str] = field(default_factory=list)  # double hand-outs, wrong VMs, held VMs taken away
    anomalies: list[str] = field(default_factory=list)  # other unexpected answers (a 500, a 4xx)
    checkouts: int = 0
    vms_handed: int = 0
    returns: int = 0
    lifetimes: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "op kind" -> failed attempts
    gave_up: Counter[str] = field(default_factory=Counter)  # op -> requests abandoned after retries
    in_doubt_checkouts: int = 0  # attempts whose answer was lost: VMs may have been taken
    in_doubt_vms: int = 0  # how many VMs those attempts asked for
    successes: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, done, daemon) of checkouts

    def hand_out(self, client: int, hosts: list[str]) -> None:
        for host in hosts:
            if host in self.holders:
                self.violations.append(f"{host} handed to client {client} while client {self.holders[host]} held it")
            elif host in self.handed:
                self.violations.append(f"{host} handed out a second time (to client {client})")
            self.holders[host] = client
            self.handed.add(host)
        self.vms_handed += len(hosts)

    def release(self, client: int, host: str) -> None:
        holder = self.holders.pop(host, None)
        if holder != client:
            self.violations.append(f"client {client} returned {host}, held by {holder}")


class Outcome:
    """The end of one request after its retries."""

    def __init__(self, status: int | None, body: Any, in_doubt: bool, daemon: int, sent: float) -> None:
        self.status = status  # None: gave up
        self.body = body
        self.in_doubt = in_doubt  # an earlier attempt may have been carried out
        self.daemon = daemon
        self.sent = sent  # monotonic time the successful attempt was sent


# Transport failures where the request never reached the server: safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _reason_kind(body: Any) -> str:
    reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
    if reason.startswith("not enough ready VMs"):
        return "empty"
    if reason.startswith("redis is unavailable"):
        return "redis"
    if "did not answer in time" in reason:
        return "deadline"
    return reason[:40] or "?"


class Client:
    """One simulated user: checkout, lifetime change or return at random, holding a few VMs at a time."""

    def __init__(self, index: int, daemons: list[Daemon], ledger: Ledger, rng: random.Random) -> None:
        self.index = index
        self.daemons = daemons
        self.ledger = ledger
        self.rng = rng
        self.held: list[str] = []
        self.maybe_returned: set[str] = set()  # a return given up on after an attempt whose answer was lost
        self.names = candidates()
        self.pool_names = [p.name for p in POOLS]
        self.aliases = sorted({a for p in POOLS for a in p.aliases})

    async def call(self, http: httpx.AsyncClient, op: str, method: str, path: str, body: Any = None,
                   budget: float = 6.0, asked: int = 0) -> Outcome:
        """One request with retries on connection errors and 503s (small jittered backoff), bounded by
        `budget` seconds. Every failed attempt is counted by kind."""
        deadline = time.monotonic() + budget
        daemon = self.rng.randrange(len(self.daemons))
        in_doubt = False
        for attempt in range(60):
            sent = time.monotonic()
            try:
                response = await http.request(method, self.daemons[daemon].url + path, json=body)
            except httpx.HTTPError as err:
                self.ledger.errors[f"{op} {type(err).__name__}"] += 1
                if not isinstance(err, _NOT_SENT):
                    in_doubt = True
                    if op == "checkout":
                        self.ledger.in_doubt_checkouts += 1
                        self.ledger.in_doubt_vms += asked
                daemon = (daemon + 1) % len(self.daemons)  # that daemon may be dead: try the next
            else:
                try:
                    payload = response.json()
                except ValueError:
                    payload = None
                if response.status_code != 503:
                    return Outcome(response.status_code, payload, in_doubt, daemon, sent)
                kind = _reason_kind(payload)
                self.ledger.errors[f"{op} 503 {kind}"] += 1
                if kind in ("redis", "deadline"):  # Redis may have run the script before the answer was lost
                    in_doubt = True
                    if op == "checkout":
                        self.ledger.in_doubt_checkouts += 1
                        self.ledger.in_doubt_vms += asked
                daemon = self.rng.randrange(len(self.daemons))
            pause = min(1.0, 0.05 * 2 ** attempt) * self.rng.uniform(0.5, 1.0)
            if time.monotonic() + pause > deadline:
                break
            await asyncio.sleep(pause)
        self.ledger.gave_up[op] += 1
        return Outcome(None, None, in_doubt, daemon, 0.0)

    def _wanted(self) -> dict[str, int]:
        kind = self.rng.choices(("pool", "alias", "shared", "multi"), weights=(35, 25, 20, 20))[0]
        if kind == "multi":
            first, second = self.rng.sample(self.pool_names + self.aliases, 2)
            return {first: self.rng.choice((1, 2)), second: 1}
        name = {"pool": lambda: self.rng.choice(self.pool_names), "alias": lambda: self.rng.choice(self.aliases),
                "shared": lambda: "el"}[kind]()
        return {name: self.rng.choices((1, 2, 3), weights=(6, 3, 1))[0]}

    async def checkout(self, http: httpx.AsyncClient) -> None:
        wanted = self._wanted()
        asked = sum(wanted.values())
        if self.rng.random() < 0.5:  # the path form: a+a+b
            path, body = "/api/v1/vm/" + "+".join(n for n, c in wanted.items() for _ in range(c)), None
        else:  # the JSON form, with the original clients' string counts
            path, body = "/api/v1/vm", {n: str(c) for n, c in wanted.items()}
        out = await self.call(http, "checkout", "POST", path, body, budget=6.0, asked=asked)
        if out.status is None:
            return
        if out.status != 200:
            self.ledger.errors[f"checkout {out.status}"] += 1
            self.ledger.anomalies.append(f"checkout {wanted} answered {out.status}: {out.body}")
            return
        hosts = self._hosts(wanted, out.body)
        self.ledger.checkouts += 1
        self.ledger.successes.append((out.sent, time.monotonic(), out.daemon))
        self.ledger.hand_out(self.index, hosts)
        self.held += hosts

    def _hosts(self, wanted: dict[str, int], body: Any) -> list[str]:
        """The hostnames of a 200 answer; checks they are as many as asked, from pools that may serve them."""
        allowed = set().union(*(self.names[name] for name in wanted))
        hosts: list[str] = []
        for key, value in body.items():
            if key in ("ok", "domain"):
                continue
            if key not in allowed:
                self.ledger.violations.append(f"checkout {wanted} answered with pool {key}")
            found = value["hostname"]
            hosts += [found] if isinstance(found, str) else list(found)
        if len(hosts) != sum(wanted.values()) or len(set(hosts)) != len(hosts):
            self.ledger.violations.append(f"checkout {wanted} answered {hosts}")
        return hosts

    async def give_back(self, http: httpx.AsyncClient, host: str, budget: float = 10.0) -> bool:
        out = await self.call(http, "return", "DELETE", f"/api/v1/vm/{host}", budget=budget)
        if out.status is None:
            if out.in_doubt:
                self.maybe_returned.add(host)
            return False  # still held: returned later
        if out.status == 200 or (out.status == 404 and (out.in_doubt or host in self.maybe_returned)):
            # A 404 after an attempt whose answer was lost: that attempt returned it.
            self.ledger.returns += 1
            self.ledger.release(self.index, host)
            self.held.remove(host)
            return True
        if out.status == 404:
            # Not running, and not by our doing: someone else returned it, or it was taken from us.
            self.ledger.violations.append(f"return of held {host} answered 404: {out.body}")
            self.held.remove(host)
            self.ledger.holders.pop(host, None)
            return False
        self.ledger.errors[f"return {out.status}"] += 1
        self.ledger.anomalies.append(f"return of held {host} answered {out.status}: {out.body}")
        return False  # still held: tried again later (a VM the checker finds running is returned then)

    async def change_lifetime(self, http: httpx.AsyncClient, host: str) -> None:
        hours = self.rng.randint(1, 12)
        out = await self.call(http, "lifetime", "PUT", f"/api/v1/vm/{host}", {"lifetime": hours})
        if out.status == 200:
            self.ledger.lifetimes += 1
        elif out.status is not None:
            self.ledger.errors[f"lifetime {out.status}"] += 1
            self.ledger.anomalies.append(f"lifetime of held {host} answered {out.status}: {out.body}")

    async def run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(5.0, connect=1.0)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while not stop.is_set():
                roll = self.rng.random()
                if not self.held or (len(self.held) < 4 and roll < 0.45):
                    await self.checkout(http)
                elif roll < 0.65:
                    await self.change_lifetime(http, self.rng.choice(self.held))
                else:
                    await self.give_back(http, self.rng.choice(self.held))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rng.uniform(0.05, 0.3))
            # The end: everything held goes back, with time to spare (the faults are over).
            for _ in range(5):
                for host in list(self.held):
                    await self.give_back(http, host, budget=20.0)
                if not self.held:
                    break


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
                 rng: random.Random, say: Any) -> None:
        self.settings = settings
        self.daemons = daemons
        self.server = server
        self.sim = sim
        self.rng = rng
        self.say = say
        self.done: list[Fault] = []
        self.up = {d.index for d in daemons}  # serving, so fair game for the next kill
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
        self.say("redis: SHUTDOWN")
        went_down, back = await asyncio.to_thread(restart_redis, self.server, self.settings.redis_down)
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


# Watching the simulator and Redis during the run ----------------------------------------------------

class Sampler:
    """A thread that lists the pool folders (own pyvmomi session) and reads ready + pending of every pool
    about once a second: every VM name the simulator ever showed, and the highest fill seen."""

    def __init__(self, config_path: Path, redis_url: str) -> None:
        from vmpoolerd.providers.vsphere import VsphereProvider

        config = load(str(config_path), env={})
        self.provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2)
        self.seen: dict[str, str] = {}  # host -> pool folder it was seen in
        self.peak: dict[str, int] = {p.name: 0 for p in POOLS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pool in POOLS:
                if self._stop.is_set():
                    return
                try:
                    for host in self.provider.list_vms(pool.name, pool.folder):
                        self.seen.setdefault(host, pool.name)
                except ProviderError:
                    pass  # the simulator is stopped: the next round reads again
                try:
                    pipe = self.redis.pipeline(transaction=True)  # one MULTI: a move is never counted twice
                    pipe.scard(K.ready(pool.name))
                    pipe.scard(K.pending(pool.name))
                    self.peak[pool.name] = max(self.peak[pool.name], sum(pipe.execute()))
                except redis.RedisError:
                    pass  # Redis is restarting

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)  # a read of a stopped simulator times out after the provider's 5 s
        self.provider.close()
        self.redis.close()


# The audit -----------------------------------------------------------------------------------------

@dataclass
class Audit:
    lost: list[str] = field(default_factory=list)  # VM-level disagreements between Redis and the simulator
    problems: list[str] = field(default_factory=list)  # everything else that is not settled or consistent
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # pool -> (ready, pending)
    in_folders: int = 0
    destroyed: int = 0
    created: int = 0
    hashes: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.problems


def audit(r: redis.Redis, provider: Any, sim: VcsimServer, seen: dict[str, str]) -> Audit:
    """Redis against the simulator. Meant for a settled pooler (no client, no clone in flight): any
    disagreement then is a lost VM, and any VM outside ready a pooler that has not settled. `seen` must be
    read before this call, so that every VM in it was created before the folders are read here."""
    result = Audit()
    state = sim.state()
    result.created = int(state["clones_succeeded"])
    if state["clones_started"] != state["clones_succeeded"] + state["clones_failed"]:
        result.problems.append(f"clones still running in the simulator: {state}")
    folders = {p.name: set(provider.list_vms(p.name, p.folder)) for p in POOLS}
    where = _state_sets(r, result)
    _folders_agree(folders, where, result)
    destroyed = _hashes(r, where, result)
    in_folders: set[str] = set().union(*folders.values())
    result.in_folders = len(in_folders)
    result.destroyed = len(destroyed - in_folders)
    if result.created != result.in_folders + result.destroyed:
        result.lost.append(f"the simulator created {result.created} VMs; {result.in_folders} are in the folders "
                           f"and {result.destroyed} marked destroyed in Redis")
    for host in sorted(set(seen) - in_folders - destroyed):
        result.lost.append(f"{host}: seen in {seen[host]}'s folder, gone, but not marked destroyed in Redis")
    return result


def _state_sets(r: redis.Redis, result: Audit) -> dict[str, list[tuple[str, str]]]:
    """host -> every (pool, state) set it is in; the pools' fill and quiet states go into `result`."""
    where: dict[str, list[tuple[str, str]]] = {}
    for pool in POOLS:
        for name in STATES:
            members = r.smembers(K.state(name, pool.name))
            for host in members:
                where.setdefault(host, []).append((pool.name, name))
            if members and name in ("running", "completed", "discovered"):
                result.problems.append(f"{pool.name}: still {name}: {sorted(members)}")
        ready, pending = r.scard(K.ready(pool.name)), r.scard(K.pending(pool.name))
        result.sizes[pool.name] = (ready, pending)
        if ready + pending != pool.size or pending:
            result.problems.append(f"{pool.name}: ready {ready} + pending {pending}, size {pool.size}")
    return where


def _folders_agree(folders: dict[str, set[str]], where: dict[str, list[tuple[str, str]]], result: Audit) -> None:
    """Every VM in a folder is in exactly one set of its pool; every VM in a set is in its pool's folder."""
    for pool, hosts in folders.items():
        for host in sorted(hosts):
            found = where.get(host, [])
            if len(found) != 1 or found[0][0] != pool:
                result.lost.append(f"{host}: in the simulator's {pool} folder, in Redis {found or 'nowhere'}")
    for host, found in sorted(where.items()):
        for pool, name in found:
            if host not in folders[pool]:
                result.lost.append(f"{host}: {name} in {pool} in Redis, not in the simulator")


def _hashes(r: redis.Redis, where: dict[str, list[tuple[str, str]]], result: Audit) -> set[str]:
    """Every VM hash is in a set, or marked destroyed, or expiring. Returns the hosts marked destroyed."""
    destroyed: set[str] = set()
    prefix = K.vm("")
    for key in r.scan_iter(match=K.vm("*"), count=1000):
        host = key[len(prefix):]
        result.hashes += 1
        marked, ttl = r.hget(key, "destroy"), r.ttl(key)
        if marked:
            destroyed.add(host)
        if host in where:
            if marked:
                result.lost.append(f"{host}: in a state set yet marked destroyed")
        elif not marked and ttl == -1:  # (-2: it expired meanwhile)
            result.lost.append(f"{host}: hash in no state set, neither destroyed nor expiring")
    return destroyed


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
                and self.settle_seconds is not None and not self.ledger.anomalies)

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
                 f"seed {self.settings.seed}",
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
                  f"  DOUBLE-HANDED VMs      {self.double_handed}"]
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
        for kind, label in (("redis", "redis restart (SHUTDOWN+AOF)"), ("vcenter", "vcenter stopped (SIGSTOP)")):
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

    server: RedisServer
    sim: VcsimServer
    config: Path
    daemons: list[Daemon]
    redis: redis.Redis
    fill_seconds: float


def _start(settings: SoakSettings, workdir: Path, stack: contextlib.ExitStack) -> Rig:
    (workdir / "redis").mkdir(exist_ok=True)
    server = RedisServer(appendonly=True, directory=str(workdir / "redis")).start()
    stack.callback(server.stop)
    sim = VcsimServer(templates=[TEMPLATE], folders=[p.folder for p in POOLS],
                      clone_delay_ms=settings.clone_delay_ms).start()

    def stop_sim() -> None:
        if sim.proc is not None and sim.proc.poll() is None:
            os.kill(sim.proc.pid, signal.SIGCONT)  # a stopped process would not act on SIGTERM
        sim.stop()

    stack.callback(stop_sim)
    config = workdir / "vmpooler.yaml"
    config.write_text(config_text(server.url, sim))
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
        faults = Faults(settings, rig.daemons, rig.server, rig.sim, rng, say)

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
                            dict(sampler.peak), workdir, exits, started)
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
    args = parser.parse_args()
    if args.seconds < 45:
        parser.error("--seconds must be at least 45 (the vCenter stop alone is 20 s)")
    result = run_soak(SoakSettings(seconds=args.seconds, clients=args.clients, seed=args.seed,
                                   workdir=args.workdir, settle_seconds=args.settle_seconds))
    print(result.report())
    print(json.dumps({"passed": result.passed, "lost": result.lost, "double_handed": result.double_handed}))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
