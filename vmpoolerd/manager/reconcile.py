"""Make Redis and the provider agree, every pass: the crash-safety of the whole manager rests here.

- A VM in the pool's folder that Redis does not know is marked discovered, and a pass later completed
  (destroyed) unless it turned up in a set meanwhile; but only a VM that carries this pooler's mark, or
  none with `purge_unconfigured` (ownership.py). Any other is left alone and reported once.
- A VM Redis has that is missing from the pool's folder is first looked up by name anywhere in the
  provider (`Locating`, vSphere): one found elsewhere, unmarked or with our mark, is tracked where it is
  (the pool's `folder:` changed, someone moved it). One not found is gone: a ready, running, completed or
  discovered VM is forgotten. But one inventory answer does not decide the fate of many VMs: when two or
  more, and at least half, of a pool's ready and running VMs vanish in one pass (a folder hidden by a
  permissions change, a partial answer), none is forgotten, and health says so, until they come back or
  an operator confirms they are gone (`vmpoolerd --forget-vanished POOL`).
- A pending VM the provider does not have is forgotten once no one can still be cloning it: older than
  the pool's timeout; or not in flight in this process and not a live other manager's clone, when the
  provider shows no clone task that could still make it (its answer lost, its pooler gone; the original's
  records included); without a provider that can tell, when its manager is this one or dead. A clone of
  a live manager is left to finish.

Together with add_pending.lua recording a VM before its clone starts, and destroys leaving `completed`
only after the provider confirmed, one pass after any crash leaves no VM in the provider unknown to Redis
and no VM in Redis that the provider lacks.
"""

from __future__ import annotations

import logging

from vmpooler_core.keys import STATES
from vmpooler_core.provider import Locating
from vmpooler_core.provider_health import VANISHED

from . import ondemand_vms, ownership
from .pool_pass import PoolPass

log = logging.getLogger("vmpooler.manager")
_LOCATE_TIMEOUT = 300.0
_TRACKED = ("ready", "running", "completed", "discovered")


async def locate(p: PoolPass) -> None:
    """Look the VMs missing from the pool's folder up anywhere in the provider; those found (unmarked, or
    with our mark) join the pass's inventory where they are."""
    missing = set().union(*(p.sets[state] for state in (*_TRACKED, "pending"))) - p.facts.keys() - p.protected
    if not missing or not isinstance(p.provider, Locating):
        return
    located = await p.ctx.runner.call(p.provider.locate, p.name, sorted(missing), timeout=_LOCATE_TIMEOUT)
    p.cloning = located.cloning
    for host, facts in located.found.items():
        if host in missing and facts.pooler_id in (None, p.ctx.pooler_id):
            p.facts[host] = facts


async def forget_vanished(p: PoolPass) -> None:
    await locate(p)
    gone = {state: sorted(p.sets[state] - p.facts.keys() - p.protected) for state in _TRACKED}
    held = sorted(gone["ready"] + gone["running"])
    at_once = len(held) >= 2 and 2 * len(held) >= len(p.sets["ready"] | p.sets["running"])
    if at_once and not await _confirmed(p, held):
        return
    p.ctx.health.holding(p.name, VANISHED, None)
    for state, hosts in gone.items():
        for host in hosts:
            await p.forget(host, destroyed=True, reason=f"{state} VM no longer in the provider")


async def _confirmed(p: PoolPass, held: list[str]) -> bool:
    """Whether an operator confirmed that the VMs vanished at once are gone; until then they are held."""
    key = p.ctx.inventory.keys.forget_vanished(p.name)
    if await p.ctx.inventory.redis.get(key):
        await p.ctx.inventory.write(("DEL", key))
        log.warning("forgetting pool=%s: %d VMs that vanished at once, as an operator confirmed: %s", p.name,
                    len(held), " ".join(held))
        return True
    shown = " ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    detail = (f"{len(held)} of its ready and running VMs vanished from the provider at once ({shown}); kept "
              f"until they come back or `vmpoolerd --forget-vanished {p.name}` confirms they are gone")
    if p.ctx.health.holding(p.name, VANISHED, detail):
        log.warning("holding pool=%s: %s", p.name, detail)
    return False


def _clone_dead(p: PoolPass, host: str) -> bool:
    owner = p.field(host, "cloned_by")
    age = p.age(host, "clone")
    if age is None or age > p.ctx.timeout_seconds(p.pool):
        return True
    if owner is not None and owner != p.ctx.owner and owner in p.ctx.presence.live:
        return False  # a live manager's clone: left to finish
    if p.cloning is not None:
        return not p.cloning  # the provider shows no VM, and no clone task that could still make it
    if owner is None:
        return False  # recorded by another implementation: give it the whole timeout
    return True  # this manager's (its clone died with an earlier run of it) or a dead one's


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
