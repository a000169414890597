"""What each fault of a real vCenter and its network costs: VMs lost, VMs leaked, clones wasted, and the
time from the fault to full pools.

    python bench/vcenter_faults.py [--runs 3] [--faults idle,lose-clone,...] [--size 4]

For each fault and run: a fresh Redis and simulator (tests/vcsim, clones taking 300 ms), the fault proxy
of tests/faultproxy.py in front of it, and a manager (`run_forever`, in this process) keeping two pools of
`--size` full while a client takes a ready VM and returns a running one every 0.15 s. After a few seconds
of that the fault is injected; the client then returns every VM it holds and stops, and the run waits for
every pool to be full again (ready = size, nothing pending). Then the audit:

    lost    VMs Redis still tracks that vCenter no longer has, or VMs vCenter has that Redis forgot
            (the two are the same VMs: one lost is one leaked), counted once each
    leaked  VMs in the pool folders unknown to Redis
    wasted  clones vCenter started minus the VMs that reached ready (their `ready` stamp) or are pending
    to full seconds from the fault to full pools

Faults: idle (the server closes connections idle 0.3 s; the client pauses 1 s), lose-clone (5 clone
answers lost after vCenter made the clone), lose-destroy (5 destroy answers lost), stall (3 clone answers
held past the provider's 2 s timeout), session (every session ended by vCenter), refuse (connections
refused for 3 s), clash (3 clones refused with FileAlreadyExists), restart (the simulator restarted in
the middle of clones: it keeps no state, so every VM is gone and an operator confirms it with
`vmpoolerd --forget-vanished`, counted in the time to full).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from pyVim.connect import Disconnect, SmartConnect
from redis import asyncio as aioredis

from tests.faultproxy import Fault, FaultProxy
from tests.manager.vcenter_faults import end_sessions
from tests.redis_server import RedisServer
from tests.vcsim.server import VcsimServer
from vmpooler_core.config import Config
from vmpooler_core.config_loader import load
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import STATES, Keys
from vmpooler_core.metrics import NullMetrics
from vmpoolerd import confirm
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers

K = Keys()
TEMPLATE = "templates/centos-6-x86_64"
POOLS = ("a", "b")
FAULTS = ("idle", "lose-clone", "lose-destroy", "stall", "session", "refuse", "clash", "restart")


@dataclass
class Outcome:
    lost: int
    leaked: int
    wasted: int
    to_full: float


def config_for(proxy: FaultProxy, sim: VcsimServer, redis_url: str, size: int) -> Config:
    pools = "".join(f"  - {{name: {p}, size: {size}, template: {TEMPLATE}, folder: vmpooler/{p}, provider: vsphere}}\n"
                    for p in POOLS)
    return load(text=f""":redis:
  url: {redis_url}
:config:
  task_limit: 4
  manager_loop_seconds: 0.5
  manager_lease_seconds: 10
  manager_backoff_max: 1
  vm_checktime: 0
:providers:
  :vsphere:
    server: {proxy.host}
    port: {proxy.port}
    username: {sim.user}
    password: {sim.password}
    insecure: true
    timeout: 2
    ready_check: none
:pools:
{pools}""", env={})


def vcenter_vms(sim: VcsimServer) -> set[str]:
    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password, disableSslCertValidation=True)
    try:
        found: set[str] = set()
        for pool in POOLS:
            folder = si.content.searchIndex.FindByInventoryPath(f"DC0/vm/vmpooler/{pool}")
            found |= {child.name for child in folder.childEntity}
        return found
    finally:
        Disconnect(si)


class Client:
    """Takes a ready VM and returns a running one, each every `every` seconds."""

    def __init__(self, sync: redis.Redis, inventory: Inventory) -> None:
        self.sync = sync
        self.inventory = inventory
        self.pause = 0.0

    async def churn(self, stop: asyncio.Event, every: float = 0.15) -> None:
        while not stop.is_set():
            for pool in POOLS:
                running = sorted(self.sync.smembers(K.running(pool)))
                if running:
                    await self.inventory.move(pool, running[0], "running", "completed")
                ready = sorted(self.sync.smembers(K.ready(pool)))
                if ready:
                    await self.inventory.move(pool, ready[0], "ready", "running")
            await asyncio.sleep(every + self.pause)

    async def give_back(self) -> None:
        for pool in POOLS:
            for host in self.sync.smembers(K.running(pool)):
                await self.inventory.move(pool, host, "running", "completed")


def full(sync: redis.Redis, size: int) -> bool:
    return all(sync.scard(K.ready(p)) == size and not sync.scard(K.pending(p)) and not sync.scard(K.completed(p))
               for p in POOLS)


async def wait(condition: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"not reached within {seconds:.0f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def one_run(fault: str, size: int) -> Outcome:
    server = RedisServer().start()
    sim = VcsimServer(templates=[TEMPLATE], folders=[f"vmpooler/{p}" for p in POOLS], clone_delay_ms=300).start()
    sims = [sim]
    proxy = FaultProxy(sim.host, sim.port).start()
    config = config_for(proxy, sim, server.url, size)
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    sync = redis.Redis.from_url(server.url, decode_responses=True)
    providers = build_providers(config)
    manager = Manager(config, client, providers, NullMetrics(), stop_grace=5)
    stop, stop_churn = asyncio.Event(), asyncio.Event()
    runner = asyncio.create_task(manager.run_forever(stop))
    user = Client(sync, Inventory(client))
    try:
        await wait(lambda: full(sync, size), 60)
        churn = asyncio.create_task(user.churn(stop_churn))
        await asyncio.sleep(3)
        started = time.monotonic()
        await inject(fault, proxy, sim, sims, user, manager)
        stop_churn.set()
        await churn
        await user.give_back()
        await wait(lambda: full(sync, size), 120)
        to_full = time.monotonic() - started
        await asyncio.sleep(1)  # a few more passes: anything left over would show now
        return audit(sync, sims, to_full)
    finally:
        stop.set()
        await runner
        close_providers(providers)
        proxy.stop()
        for each in sims:
            each.stop()
        await client.aclose()
        sync.close()
        server.stop()


async def inject(fault: str, proxy: FaultProxy, sim: VcsimServer, sims: list[VcsimServer], user: Client,
                 manager: Manager) -> None:
    if fault == "idle":
        proxy.idle_close = 0.3
        user.pause = 1.0
        await asyncio.sleep(4)
    elif fault == "lose-clone":
        proxy.add(Fault("CloneVM_Task", "lose", count=5))
        await wait(lambda: not proxy.pending(), 30)
    elif fault == "lose-destroy":
        proxy.add(Fault("Destroy_Task", "close", count=5))
        await wait(lambda: not proxy.pending(), 30)
    elif fault == "stall":
        proxy.add(Fault("CloneVM_Task", "stall", count=3, seconds=3))
        await wait(lambda: not proxy.pending(), 30)
    elif fault == "session":
        await asyncio.to_thread(end_sessions, sim)
    elif fault == "refuse":
        proxy.refuse()
        await asyncio.sleep(3)
        proxy.accept()
    elif fault == "clash":
        sim.set_clone_clash(3)
        await wait(lambda: sim.state()["clone_clashes_left"] == 0, 30)
    elif fault == "restart":
        sim.stop()
        sims.append(VcsimServer(templates=[TEMPLATE], folders=[f"vmpooler/{p}" for p in POOLS], clone_delay_ms=300,
                                extra_args=["-listen", f"127.0.0.1:{sim.port}"]).start())
        for pool in POOLS:  # the operator's word: those VMs are gone with the old simulator
            await confirm.confirm(manager.inventory, pool)


def audit(sync: redis.Redis, sims: list[VcsimServer], to_full: float) -> Outcome:
    tracked = set().union(*(sync.smembers(K.state(state, pool)) for state in STATES for pool in POOLS))
    in_vcenter = vcenter_vms(sims[-1])
    leaked = len(in_vcenter - tracked)
    lost = len(tracked - in_vcenter) + leaked
    state = sims[-1].state()
    made = int(state["clones_started"]) - int(state["clones_failed"])  # a refused clone makes nothing
    if len(sims) > 1:
        # Restarted: the clones under way died with the old simulator. Every clone of the new one is still
        # there (the client stopped at the fault): one not tracked, or destroyed, was wasted.
        return Outcome(lost, leaked, made - len(tracked & in_vcenter), to_full)
    reached = sum(1 for key in sync.scan_iter(K.vm("*")) if sync.hget(key, "ready"))
    pending = sum(sync.scard(K.pending(pool)) for pool in POOLS)
    return Outcome(lost, leaked, max(0, made - reached - pending), to_full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=4)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--verbose", action="store_true", help="the manager's log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR if not args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    print(f"{'fault':<14}{'lost':>6}{'leaked':>8}{'wasted':>8}{'to full (median, s)':>22}")
    for fault in args.faults.split(","):
        outcomes = [asyncio.run(one_run(fault, args.size)) for _ in range(args.runs)]
        if args.verbose:
            print(outcomes)
        print(f"{fault:<14}{sum(o.lost for o in outcomes):>6}{sum(o.leaked for o in outcomes):>8}"
              f"{sum(o.wasted for o in outcomes):>8}{statistics.median(o.to_full for o in outcomes):>22.2f}",
              flush=True)


if __name__ == "__main__":
    main()
