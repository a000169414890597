"""Failover figures: two `vmpoolerd all` daemons on a Sentinel group (a primary, a replica, three sentinels:
Debian's redis-server and redis-sentinel on loopback), clients checking VMs out and returning them through
both, and in the middle of it a planned failover (`SENTINEL FAILOVER`) or a `kill -9` of the primary (the
killed server is started again, empty, once the sentinels promoted the replica, as an operator would
bring the machine back; the sentinels make it a replica). For each run it prints:
- acknowledged checkouts lost: a VM answered 200 that is not running on the final primary, or that was
  handed to another client while the first held it;
- VMs handed out twice; returns undone (answered 200, yet the VM is running again afterwards);
- answers 5xx, by status and code; the longest time without a successful checkout.

    python bench/failover.py [--events planned,kill] [--durability none,replica] [--min-replicas]

tests/soak/test_failover.py runs the same scenarios and asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.soak_setup import Daemon  # noqa: E402
from tests.redis_server import free_port  # noqa: E402
from tests.sentinels import MASTER, Group, sentinel_group, until  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402

K = Keys()
POOL = "pool1"
POOL_SIZE = 20  # as the operator ran it
RECOVERY_BOUND = 30.0  # seconds from the event until checkouts must succeed again


@dataclass
class Ledger:
    holders: dict[str, int] = field(default_factory=dict)  # host -> client holding it
    twice: list[str] = field(default_factory=list)
    returned: set[str] = field(default_factory=set)  # hosts whose return was answered 200
    successes: list[float] = field(default_factory=list)  # completion times of successful checkouts
    answers: Counter[str] = field(default_factory=Counter)  # "503 backend_unavailable", ...


class Client:
    """Checks out one VM at a time, holds it a moment, returns it; a failed return is tried again."""

    def __init__(self, index: int, urls: list[str], ledger: Ledger, rng: random.Random) -> None:
        self.index, self.urls, self.ledger, self.rng = index, urls, ledger, rng
        self.held: list[str] = []

    def _note(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            code = ""
            with contextlib.suppress(ValueError, AttributeError):
                code = str(response.json().get("code", ""))
            self.ledger.answers[f"{response.status_code} {code}".strip()] += 1
        else:
            self.ledger.answers[str(response.status_code)] += 1

    async def checkout(self, http: httpx.AsyncClient) -> None:
        try:
            response = await http.post(f"{self.rng.choice(self.urls)}/api/v1/vm/{POOL}")
        except httpx.HTTPError as err:
            self.ledger.answers[type(err).__name__] += 1
            return
        self._note(response)
        if response.status_code != 200:
            return
        host = response.json()[POOL]["hostname"]
        if host in self.ledger.holders:
            self.ledger.twice.append(f"{host}: to client {self.index}, held by {self.ledger.holders[host]}")
        self.ledger.holders[host] = self.index
        self.held.append(host)
        self.ledger.successes.append(time.monotonic())

    async def give_back(self, http: httpx.AsyncClient, host: str) -> bool:
        try:
            response = await http.delete(f"{self.rng.choice(self.urls)}/api/v1/vm/{host}")
        except httpx.HTTPError as err:
            self.ledger.answers[type(err).__name__] += 1
            return False
        self._note(response)
        if response.status_code in (200, 404):  # 404: an earlier attempt whose answer was lost did it
            if self.ledger.holders.get(host) == self.index:
                del self.ledger.holders[host]
            self.held.remove(host)
            if response.status_code == 200:
                self.ledger.returned.add(host)
            return True
        return False

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            while not stop.is_set():
                if self.held:
                    await self.give_back(http, self.held[0])
                else:
                    await self.checkout(http)
                await asyncio.sleep(self.rng.uniform(0.05, 0.25))


@dataclass
class Figures:
    event: str
    durability: str
    checkouts: int
    lost: list[str]
    twice: list[str]
    returns_undone: list[str]
    answers: dict[str, int]
    longest_gap: float
    recovered_after: float  # seconds from the event to the first successful checkout on the new primary

    @property
    def server_errors(self) -> int:
        """5xx answers, but for "not enough ready VMs" (503 no_capacity), which is the pool's, not Redis's."""
        return sum(count for answer, count in self.answers.items() if answer[:1] == "5" and "no_capacity" not in answer)

    @property
    def errors_500(self) -> int:
        return sum(count for answer, count in self.answers.items() if answer.startswith("500"))

    def line(self) -> str:
        fives = ", ".join(f"{count}x {answer}" for answer, count in sorted(self.answers.items())
                          if answer[:1] == "5" and "no_capacity" not in answer)
        return (f"{self.event:<8} {self.durability:<8} checkouts {self.checkouts:>4}  lost {len(self.lost):>3}  "
                f"twice {len(self.twice):>3}  returns undone {len(self.returns_undone):>2}  "
                f"5xx {self.server_errors:>4} ({fives or 'none'})  longest gap {self.longest_gap:5.2f} s  "
                f"first checkout on the new primary {self.recovered_after:5.2f} s after the event")


def config_text(group: Group, durability: str) -> str:
    return (f"redis:\n  sentinels: {group.sentinels_yaml}\n  master: {MASTER}\n  socket_timeout: 1\n"
            f"  durability: {durability}\n"
            "config:\n  manager_loop_seconds: 0.5\n  manager_lease_seconds: 3\n  manager_backoff_max: 1\n"
            "providers:\n  dummy: {clone_time: 0.1, boot_time: 0.1}\n"
            f"pools:\n  - {{name: {POOL}, size: {POOL_SIZE}}}\n")


def _bring_back(group: Group, killed_port: int) -> None:
    """Start the killed server again (empty, on its port) once the sentinels have promoted the replica."""
    group.moved_from(killed_port, RECOVERY_BOUND)
    group.server(killed_port).start()


async def _scenario(group: Group, daemons: list[Daemon], event: str, clients: int, before: float,
                    after: float) -> tuple[Ledger, float, float, int]:
    ledger = Ledger()
    stop = asyncio.Event()
    rng = random.Random(20)
    urls = [daemon.url for daemon in daemons]
    tasks = [asyncio.create_task(Client(i, urls, ledger, random.Random(rng.random())).run(stop))
             for i in range(clients)]
    helper: threading.Thread | None = None
    try:
        await asyncio.sleep(before)
        at = time.monotonic()
        if event == "planned":
            old = await asyncio.to_thread(group.failover)
        else:
            old = (await asyncio.to_thread(group.kill_primary)).port
            helper = threading.Thread(target=_bring_back, args=(group, old), daemon=True)
            helper.start()
        await asyncio.to_thread(group.moved_from, old, RECOVERY_BOUND)
        moved = time.monotonic()  # the sentinels name the promoted replica: checkouts must come back on it
        while not any(done > moved for done in ledger.successes):
            assert time.monotonic() - at < RECOVERY_BOUND, f"no checkout within {RECOVERY_BOUND:.0f} s of the event"
            await asyncio.sleep(0.05)
        await asyncio.sleep(after)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    if helper is not None:
        await asyncio.to_thread(helper.join, RECOVERY_BOUND)
    return ledger, at, moved, old


def run(event: str, durability: str, workdir: Path, *, min_replicas: bool = False, replicas: int = 1,
        clients: int = 6, before: float = 3.0, after: float = 3.0) -> Figures:
    """One scenario from start to clean stop (the daemons must exit 0)."""
    server_config = {"min-replicas-to-write": "1"} if min_replicas else None
    with sentinel_group(replicas=replicas, workdir=workdir, server_config=server_config) as group, \
            contextlib.ExitStack() as stack:
        config = workdir / "vmpooler.yaml"
        config.write_text(config_text(group, durability))
        daemons = [Daemon(i, config, free_port(), workdir / f"daemon{i}.log") for i in range(2)]
        for daemon in daemons:
            stack.callback(daemon.kill)  # no daemon outlives the run, whatever happens
            daemon.start()
        for daemon in daemons:
            assert daemon.wait_serving(30), daemon.log_tail()
        until(lambda: group.client(group.primary_port()).scard(K.ready(POOL)) == POOL_SIZE, 30, "the pool filled")
        ledger, at, moved, old = asyncio.run(_scenario(group, daemons, event, clients, before, after))
        final = group.client(group.moved_from(old, RECOVERY_BOUND))
        running = final.smembers(K.running(POOL))
        lost = sorted({*(h for h in ledger.holders if h not in running), *(t.split(":")[0] for t in ledger.twice)})
        undone = sorted(h for h in ledger.returned if h in running and h not in ledger.holders)
        times = [at - before, *ledger.successes]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        recovered = min(done for done in ledger.successes if done > moved) - at
        for host in running:  # give everything back, held or undone, and stop cleanly
            with contextlib.suppress(httpx.HTTPError):
                httpx.delete(f"{daemons[0].url}/api/v1/vm/{host}", timeout=5)
        for daemon in daemons:
            assert daemon.alive(), f"a daemon died:\n{daemon.log_tail()}"
            assert daemon.stop() == 0, daemon.log_tail()
        return Figures(event, durability, len(ledger.successes), lost, ledger.twice, undone, dict(ledger.answers),
                       max(gaps), recovered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="planned,kill", type=lambda s: s.split(","))
    parser.add_argument("--durability", default="none,replica", type=lambda s: s.split(","))
    parser.add_argument("--min-replicas", action="store_true", help="min-replicas-to-write 1 on the servers")
    parser.add_argument("--replicas", type=int, default=1, help="replicas of the primary")
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario")
    args = parser.parse_args()
    for event in args.events:
        for durability in args.durability:
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(prefix="vmpooler-failover-") as workdir:
                    print(run(event, durability, Path(workdir), min_replicas=args.min_replicas,
                                replicas=args.replicas).line(), flush=True)


if __name__ == "__main__":
    main()
