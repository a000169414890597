"""The soak run's sampler and final audit of Redis against the simulator (see bench/soak.py)."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.soak_clients import Ledger  # noqa: E402
from bench.soak_setup import POOLS, K  # noqa: E402
from tests.vcsim.server import VcsimServer  # noqa: E402
from vmpooler_core.config_loader import load  # noqa: E402
from vmpooler_core.keys import STATES  # noqa: E402
from vmpooler_core.provider import ProviderError  # noqa: E402

# What Redis kept after its kill ---------------------------------------------------------------------

def acknowledged_lost(r: redis.Redis, ledger: Ledger) -> list[str]:
    """The VMs clients hold (checkout answered, no return under way) that Redis does not have as running."""
    pipe = r.pipeline(transaction=True)
    for pool in POOLS:
        pipe.smembers(K.running(pool.name))
    running = set().union(*pipe.execute())
    return sorted(host for host in ledger.holders if host not in ledger.returning and host not in running)


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


