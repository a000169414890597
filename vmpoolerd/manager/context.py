"""What every part of the manager shares for one manager process: built once by `Manager`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from vmpooler_core import redis_faults
from vmpooler_core.config import Config, PoolConfig
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import Metrics
from vmpooler_core.provider import Provider

from .health_report import HealthReport
from .lease import Leases, Presence
from .runner import ProviderRunner


def redis_fault(err: BaseException) -> bool:
    """Whether `err` is Redis not there right now (down, unreachable, loading, a replica during a Sentinel
    failover) or there and unwilling (credentials, ACL permissions, NOREPLICAS, OOM, BUSY): the manager
    backs off from these and retries, logging once per change. Anything else is a bug, logged as one."""
    return redis_faults.is_fault(err)


@dataclass
class Context:
    config: Config
    inventory: Inventory
    providers: Mapping[str, Provider]
    metrics: Metrics
    runner: ProviderRunner
    leases: Leases
    presence: Presence
    owner: str  # this manager's id
    health: HealthReport  # how its providers are doing, for /healthcheck and /status
    clock: Callable[[], float]  # epoch seconds; tests move it to age VMs
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when a pool deserves a pass soon
    woken: set[str] = field(default_factory=set)  # which pools
    # This pooler's identity (ownership.py), marked on every clone; known from the first pass on.
    pooler_id: str | None = None

    def poke(self, pool: str) -> None:
        self.woken.add(pool)
        self.wake.set()

    def timeout_seconds(self, pool: PoolConfig) -> float:
        """How long a VM may stay pending (pool `timeout`, else the global one; minutes)."""
        return 60.0 * (pool.timeout or self.config.app.timeout)
