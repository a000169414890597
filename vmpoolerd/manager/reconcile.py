"""Make Redis and the provider agree, every pass: the crash-safety of the whole manager rests here.

- A VM in the pool's folder that Redis does not know is marked discovered, and a pass later completed
  (destroyed) unless it turned up in a set meanwhile.
- A ready, running, completed or discovered VM that the provider no longer has is forgotten.
- A pending VM the provider does not have is forgotten once no one can still be cloning it: its clone is
  not in flight in this process and its manager is this one (so the clone died with an earlier run of
  it) or dead, or it is older than the pool's timeout. A clone of a live manager is left to finish.

Together with add_pending.lua recording a VM before its clone starts, and destroys leaving `completed`
only after the provider confirmed, one pass after any crash leaves no VM in the provider unknown to Redis
and no VM in Redis that the provider lacks.
"""

from __future__ import annotations

import logging

from .pool_pass import PoolPass

log = logging.getLogger("vmpooler.manager")


async def forget_vanished(p: PoolPass) -> None:
    for state in ("ready", "running", "completed", "discovered"):
        for host in sorted(p.sets[state] - p.facts.keys() - p.protected):
            await p.forget(host, destroyed=True, reason=f"{state} VM no longer in the provider")


def _clone_dead(p: PoolPass, host: str) -> bool:
    owner = p.field(host, "cloned_by")
    age = p.age(host, "clone")
    if age is None or age > p.ctx.timeout_seconds(p.pool):
        return True
    if owner is None:
        return False  # recorded by another implementation: give it the whole timeout
    return owner == p.ctx.owner or owner not in p.ctx.presence.live


async def forget_dead_pending(p: PoolPass) -> None:
    for host in sorted(p.sets["pending"] - p.facts.keys() - p.protected):
        if _clone_dead(p, host):
            await p.forget(host, destroyed=False, reason="its clone ended without a VM", only_from="pending")


async def discover(p: PoolPass) -> None:
    # First the second look at earlier finds, so that a new find always waits one pass.
    seen_again = sorted((p.sets["discovered"] & p.facts.keys()) - p.protected)
    for host in await p.ctx.inventory.settle_discovered(p.name, seen_again):
        log.warning("discovered -> completed pool=%s vm=%s: unknown VM in the pool folder", p.name, host)
        p.sets["completed"].add(host)
    p.sets["discovered"] -= set(seen_again)
    strangers = sorted(p.facts.keys() - p.known() - p.protected)
    for host in await p.ctx.inventory.discover(p.name, strangers):
        log.warning("discovered pool=%s vm=%s: in the pool folder but unknown to Redis", p.name, host)
        p.sets["discovered"].add(host)
