"""What one pass knows about one pool: the provider's inventory and Redis's view, read once at its start.

The parts of the pass (reconcile.py, lifecycle.py) act on it and keep its sets in step with the moves
they make, so the counts at the end of the pass (gauges, fill) are right without reading Redis again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vmpooler_core import audit, clock
from vmpooler_core.config import PoolConfig
from vmpooler_core.provider import Provider, VmFacts
from vmpooler_core.replies import Kept

from .cloner import Cloner
from .context import Context
from .destroyer import Destroyer
from .readiness import Probe

log = logging.getLogger("vmpooler.manager")

# The VM hash fields a pass reads for pending, ready and running VMs.
FIELDS = ("clone", "cloned_by", "ready", "check", "lifetime", "checkout", "request_id")


@dataclass
class PoolPass:
    ctx: Context
    cloner: Cloner
    destroyer: Destroyer
    pool: PoolConfig
    provider: Provider
    probe: Probe
    facts: dict[str, VmFacts]  # the provider's inventory of the pool's folder
    sets: dict[str, set[str]]  # Redis: state -> hosts
    active: dict[str, str]  # Redis: host -> checkout stamp
    fields: dict[str, dict[str, str | None]]  # Redis: host -> FIELDS
    now: float  # epoch seconds
    # Hosts with a clone or destroy of this process in flight, or destroyed since the inventory was read:
    # the inventory may not show them as they are now, so the pass leaves them alone.
    protected: set[str] = field(default_factory=set)
    # Redis: the VMs of the folder left alone as not ours to destroy (host -> their mark, see reconcile.py).
    spared: dict[str, str] = field(default_factory=dict)
    # Whether a clone that could make one of the pending VMs missing from the folder is still running, as
    # the provider said (reconcile.locate); None when it was not asked or cannot tell.
    cloning: bool | None = None

    @property
    def name(self) -> str:
        return self.pool.name

    def field(self, host: str, name: str) -> str | None:
        return self.fields.get(host, {}).get(name)

    def age(self, host: str, name: str) -> float | None:
        """Seconds since the time stamp in field `name` of the VM; None when there is none."""
        moment = clock.parse(self.field(host, name))
        return None if moment is None else self.now - moment

    async def move(self, host: str, source: str, target: str, reason: str,
                   stamps: dict[str, object] | None = None, level: int = logging.INFO) -> bool:
        """One atomic move (move.lua), with its entry in the VM's history; False when something else
        moved the VM first."""
        entry = audit.entry(target, clock.stamp(self.now), manager=self.ctx.owner, detail=reason)
        moved = await self.ctx.inventory.move(self.name, host, source, target, stamps, history=entry)
        if moved:
            self.sets[source].discard(host)
            self.sets[target].add(host)
            log.log(level, "%s -> %s pool=%s vm=%s: %s", source, target, self.name, host, reason)
        return moved

    async def forget(self, host: str, destroyed: bool, reason: str, only_from: str | None = None) -> None:
        """Out of every set (forget.lua); the hash is kept for data_ttl. With `only_from`, only if the VM
        is still in that state when the script runs."""
        entry = audit.entry("forgotten", clock.stamp(self.now), manager=self.ctx.owner, detail=reason)
        result = await self.ctx.inventory.forget(self.name, host, destroyed=destroyed, only_from=only_from,
                                                 history=entry)
        if isinstance(result, Kept):
            return
        for members in self.sets.values():
            members.discard(host)
        log.warning("forgotten pool=%s vm=%s: %s", self.name, host, reason)
