"""Make Redis and the provider agree, every pass: the crash-safety of the whole manager rests here.

- A VM in the pool's folder that Redis does not know is marked discovered, and a pass later completed
  (destroyed) unless it turned up in a set meanwhile; but only a VM that carries this pooler's mark, or
  none with `purge_unconfigured` (ownership.py). Any other is left alone and reported once.
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

from vmpooler_core.keys import STATES

from . import ondemand_vms, ownership
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
        if _clone_dead(p, host) and ondemand_vms.ordered(p, host):
            await ondemand_vms.vanished(p, host, "its clone ended without a VM")
        elif _clone_dead(p, host):
            await p.forget(host, destroyed=False, reason="its clone ended without a VM", only_from="pending")


async def discover(p: PoolPass) -> None:
    mine, purge = p.ctx.pooler_id, p.ctx.config.app.purge_unconfigured

    def ours(host: str) -> bool:
        return ownership.destroyable(p.facts[host], mine, purge)

    # First the second look at earlier finds, so that a new find always waits one pass. Their marks are
    # read again: a find that is not ours to destroy after all is spared below.
    seen_again = [host for host in sorted((p.sets["discovered"] & p.facts.keys()) - p.protected) if ours(host)]
    for host in await p.ctx.inventory.settle_discovered(p.name, seen_again):
        log.warning("discovered -> completed pool=%s vm=%s: unknown VM in the pool folder", p.name, host)
        p.sets["completed"].add(host)
    p.sets["discovered"] -= set(seen_again)
    recorded = set().union(*(p.sets[state] for state in STATES if state != "discovered"))
    unknown = sorted(p.facts.keys() - recorded - p.protected)
    for host in await p.ctx.inventory.discover(p.name, [host for host in unknown if ours(host)]):
        log.warning("discovered pool=%s vm=%s: in the pool folder but unknown to Redis", p.name, host)
        p.sets["discovered"].add(host)
    spare = {host: p.facts[host].pooler_id for host in unknown if not ours(host)}
    if spare or p.spared:
        await _spare(p, spare)


async def _spare(p: PoolPass, marks: dict[str, str | None]) -> None:
    """Record the unknown VMs left alone; each is reported when it is first seen, not on every pass."""
    result = await p.ctx.inventory.spare(p.name, marks)
    p.sets["discovered"] -= marks.keys()
    for host, mark in result.new.items():
        log.warning("left alone pool=%s vm=%s: in the pool folder and unknown to Redis, but %s", p.name, host,
                    ownership.whose(mark, p.ctx.pooler_id))
    for host, mark in result.changed.items():
        log.info("left alone pool=%s vm=%s: its mark changed: %s", p.name, host,
                 ownership.whose(mark, p.ctx.pooler_id))
    for host in result.dropped:
        if host not in p.facts:
            log.info("left alone VM gone pool=%s vm=%s: no longer in the pool folder", p.name, host)
