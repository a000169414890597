"""Redis Sentinel under real daemons: two `vmpoolerd all` processes on a master + replica + sentinel group
(Debian's redis-sentinel), clients checking VMs out and returning them through both; the master is killed
with SIGKILL in the middle of that. The daemons must carry on by themselves after the sentinel's
failover: the same processes (no restart), checkouts succeeding again on each of them within a bound,
/healthcheck healthy again, the pools refilled on the promoted replica, and no VM handed out twice.

(tests/test_sentinel.py covers the core library alone; this is the daemon level.)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from bench.soak_setup import Daemon
from tests.processes import terminate
from tests.redis_server import RedisServer, free_port
from tests.sentinels import until
from vmpooler_core.keys import Keys

pytestmark = pytest.mark.slow
K = Keys()
POOLS = {"pool1": 6, "pool2": 6}
MASTER = "vmp"
RECOVERY_BOUND = 20.0  # seconds from the kill until each daemon serves checkouts again


def _until(predicate: Callable[[], object], seconds: float, what: str) -> float:
    """`tests.sentinels.until`, an HTTP error counting as false too (the daemons' API)."""
    return until(predicate, seconds, what, ignore=(redis.RedisError, OSError, httpx.HTTPError))


@dataclass
class Group:
    master: RedisServer
    replica: RedisServer
    sentinel_port: int


@contextlib.contextmanager
def sentinel_group(workdir: Path) -> Iterator[Group]:
    binary = shutil.which("redis-sentinel")
    assert binary, "redis-sentinel is not installed: run scripts/test"
    servers: list[RedisServer] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        master = RedisServer().start()
        servers.append(master)
        replica = RedisServer().start()
        servers.append(replica)
        redis.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
        port = free_port()
        conf = workdir / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
                        f"sentinel down-after-milliseconds {MASTER} 500\n"
                        f"sentinel failover-timeout {MASTER} 3000\n")
        with open(workdir / "sentinel.log", "wb") as log:
            proc = subprocess.Popen([binary, str(conf)], stdout=log, stderr=log)
        _until(lambda: redis.Redis(port=port).sentinel_master(MASTER)["num-slaves"] >= 1, 20,
               "the sentinel sees the replica")
        _until(lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up", 20,
               "the replica is in sync")
        yield Group(master, replica, port)
    finally:
        if proc is not None:
            terminate(proc, 10)
        for server in servers:
            server.stop()


@dataclass
class Ledger:
    holders: dict[str, int] = field(default_factory=dict)
    handed: set[str] = field(default_factory=set)
    twice: list[str] = field(default_factory=list)
    successes: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, done, daemon) of checkouts
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Client:
    """Checkouts and returns on both daemons at random; a failed return is tried again later, a failed
    checkout given up. Ends by returning everything it holds."""

    def __init__(self, index: int, urls: list[str], ledger: Ledger, rng: random.Random) -> None:
        self.index, self.urls, self.ledger, self.rng = index, urls, ledger, rng
        self.held: list[str] = []

    async def checkout(self, http: httpx.AsyncClient) -> None:
        daemon = self.rng.randrange(len(self.urls))
        sent = time.monotonic()
        name = self.rng.choice(("pool1", "one", "pool2"))
        try:
            response = await http.post(f"{self.urls[daemon]}/api/v1/vm/{name}")
        except httpx.HTTPError as err:
            self.ledger.error(type(err).__name__)
            return
        if response.status_code != 200:
            reason = str(response.json().get("reason", ""))[:20]  # "not enough ready VMs", "redis is unavailable"
            self.ledger.error(f"checkout {response.status_code} {reason}")
            return
        hosts = [v["hostname"] for k, v in response.json().items() if k not in ("ok", "domain")]
        for host in hosts:
            if host in self.ledger.handed:
                self.ledger.twice.append(f"{host} to client {self.index}, held by {self.ledger.holders.get(host)}")
            self.ledger.holders[host] = self.index
            self.ledger.handed.add(host)
        self.held += hosts
        self.ledger.successes.append((sent, time.monotonic(), daemon))

    async def give_back(self, http: httpx.AsyncClient, host: str) -> bool:
        try:
            response = await http.delete(f"{self.rng.choice(self.urls)}/api/v1/vm/{host}")
        except httpx.HTTPError as err:
            self.ledger.error(type(err).__name__)
            return False
        # 404: an earlier attempt whose answer was lost did return it.
        if response.status_code in (200, 404):
            self.ledger.holders.pop(host, None)
            self.held.remove(host)
            return True
        self.ledger.error(f"return {response.status_code}")
        return False

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            while not stop.is_set():
                if self.held and (len(self.held) >= 3 or self.rng.random() < 0.4):
                    await self.give_back(http, self.rng.choice(self.held))
                else:
                    await self.checkout(http)
                await asyncio.sleep(self.rng.uniform(0.02, 0.1))
            for _ in range(50):  # bounded: the failover is long over by now
                if not self.held:
                    break
                if not await self.give_back(http, self.held[0]):
                    await asyncio.sleep(0.2)


def write_config(path: Path, sentinel_port: int) -> Path:
    pools = "".join(f"  - {{name: {name}, size: {size}{', alias: [one]' if name == 'pool1' else ''}}}\n"
                    for name, size in POOLS.items())
    path.write_text(f"redis:\n  sentinels: ['127.0.0.1:{sentinel_port}']\n  master: {MASTER}\n  socket_timeout: 1\n"
                    "config:\n  manager_loop_seconds: 0.5\n  manager_lease_seconds: 3\n  manager_backoff_max: 1\n"
                    "providers:\n  dummy: {clone_time: 0.1, boot_time: 0.1}\n"
                    f"pools:\n{pools}")
    return path


def recovered(ledger: Ledger, killed: float) -> dict[int, float]:
    """daemon -> seconds from the kill to the end of the first successful checkout sent after it."""
    found: dict[int, float] = {}
    for sent, done, daemon in ledger.successes:
        if sent > killed:
            found[daemon] = min(found.get(daemon, float("inf")), done - killed)
    return found


def healthy(daemon: Daemon) -> bool:
    return httpx.get(daemon.url + "/healthcheck", timeout=2).status_code == 200


@pytest.mark.timeout(180)
def test_daemons_carry_on_after_the_master_is_killed(tmp_path: Path) -> None:
    with sentinel_group(tmp_path) as group, contextlib.ExitStack() as stack:
        config = write_config(tmp_path / "vmpooler.yaml", group.sentinel_port)
        daemons = [Daemon(i, config, free_port(), tmp_path / f"daemon{i}.log") for i in range(2)]
        for daemon in daemons:
            stack.callback(daemon.kill)  # no daemon outlives the test, whatever happens
            daemon.start()
        logs = lambda: "\n".join(d.log_tail(60) for d in daemons)  # noqa: E731
        for daemon in daemons:
            assert daemon.wait_serving(30), logs()
        master = redis.Redis(port=group.master.port, decode_responses=True)
        stack.callback(master.close)
        _until(lambda: all(master.scard(K.ready(p)) == size for p, size in POOLS.items()), 30, "pools filled")
        _until(lambda: all(healthy(d) for d in daemons), 20, "healthy before the kill")
        pids = [d.proc.pid for d in daemons if d.proc is not None]

        ledger = Ledger()
        killed: dict[str, float] = {}

        async def scenario() -> None:
            stop = asyncio.Event()
            rng = random.Random(7)
            urls = [d.url for d in daemons]
            tasks = [asyncio.create_task(Client(i, urls, ledger, random.Random(rng.random())).run(stop))
                     for i in range(8)]
            try:
                await asyncio.sleep(3)  # load before the kill
                assert group.master.proc is not None
                group.master.proc.kill()  # SIGKILL: no goodbye to the replica or the sentinel
                group.master.proc.wait(10)
                killed["at"] = time.monotonic()
                # Each daemon serves checkouts again within the bound (requests sent after the kill).
                for _ in range(int(RECOVERY_BOUND * 10)):
                    if len(recovered(ledger, killed["at"])) == len(daemons):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2)  # and keeps serving them
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 60)

        asyncio.run(scenario())
        after = recovered(ledger, killed["at"])
        assert len(after) == len(daemons), f"no checkout after the kill through every daemon: {after}\n{logs()}"
        assert max(after.values()) < RECOVERY_BOUND, after
        promoted = redis.Redis(port=group.replica.port, decode_responses=True)
        stack.callback(promoted.close)
        assert promoted.role()[0] == "master", "the sentinel did not promote the replica"
        took = _until(lambda: all(healthy(d) for d in daemons), RECOVERY_BOUND, "/healthcheck healthy again")

        assert [d.proc.pid for d in daemons if d.proc is not None and d.alive()] == pids, \
            f"a daemon died instead of carrying on:\n{logs()}"
        assert not ledger.twice, f"handed out twice: {ledger.twice}"
        assert not ledger.holders, f"still held: {ledger.holders}"
        # Checkout answers lost in the failover leave running VMs nobody holds: give them back, then the
        # managers (on the new master) destroy every returned VM and refill the pools.
        for pool in POOLS:
            for host in promoted.smembers(K.running(pool)):
                httpx.delete(f"{daemons[0].url}/api/v1/vm/{host}", timeout=5)
        _until(lambda: all(promoted.scard(K.ready(p)) == size and not promoted.scard(K.running(p))
                           and not promoted.scard(K.completed(p)) for p, size in POOLS.items()),
               RECOVERY_BOUND, "pools refilled on the promoted replica")
        print(f"checkouts {len(ledger.successes)}, first checkout after the kill per daemon "
              f"{ {d: round(s, 2) for d, s in after.items()} } s, healthy again {took:.1f} s after that; "
              f"errors {ledger.errors}")
        for daemon in daemons:
            assert daemon.stop() == 0, logs()
