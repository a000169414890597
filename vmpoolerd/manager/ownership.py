"""Whose VMs these are: the pooler's identity, marked on every clone, decides which unknown VMs a pass
may destroy.

Two poolers may be pointed at the same vCenter folders (a staging copy of the configuration with a Redis
of its own, say). Each then finds the other's VMs in its pool folders, unknown to its Redis, and the
original's rule (destroy them) has them destroy each other's VMs, checked-out ones included. So every
clone carries the identity of the pooler that made it (`CloneSpec.pooler_id`: the vSphere provider writes
it into the VM's annotation, the dummy provider into its record), and an unknown VM is destroyed only
when it carries ours: a clone of ours whose Redis record was lost. One with another pooler's mark is left
alone, and so is one with no mark at all (made by hand, or by the original vmpooler, whose note names no
pooler) unless `purge_unconfigured` is on. Each VM left alone is reported once (reconcile.py).

The identity belongs to the installation, that is to its Redis: the first manager stores a random one
(SET NX) and every manager on that Redis reads it, so all of them, and every restart, share it, while a
staging copy on a Redis of its own makes its own. Every pass stores it again if it is missing, so it
outlives a Redis that lost its data while a manager runs. `config: pooler_id` sets it instead (to keep
recognising the VMs after Redis lost its data with no manager running); copied into another pooler's
configuration, it would make the two one pooler again.
"""

from __future__ import annotations

import logging
import secrets

from vmpooler_core.inventory import Inventory
from vmpooler_core.provider import VmFacts

log = logging.getLogger("vmpooler.manager")


async def identify(inventory: Inventory, configured: str | None, current: str | None) -> str:
    """This pooler's identity: `configured`, else the one stored in Redis (stored first when there is
    none: `current`, the one this manager used so far, else a new random one)."""
    stored = await inventory.claim_pooler_id(configured or current or secrets.token_hex(8))
    chosen = configured or stored
    if current is None:
        log.info("pooler id=%s%s", chosen, " (config pooler_id)" if configured else "")
        if configured and stored != configured:
            log.warning("pooler id %s (config pooler_id) is not the one stored in Redis (%s): VMs marked %s "
                        "are now another pooler's, and left alone", configured, stored, stored)
    elif chosen != current:
        log.warning("pooler id changed from %s to %s (the one another manager stored in Redis)", current,
                    chosen)
    return chosen


def destroyable(facts: VmFacts, mine: str | None, purge_unconfigured: bool) -> bool:
    """May a pass destroy this VM, found in a pool folder and unknown to Redis?"""
    if facts.pooler_id is None:
        return purge_unconfigured
    return facts.pooler_id == mine


def whose(mark: str | None, mine: str | None) -> str:
    """Why a VM is left alone, for its log line."""
    if not mark:
        return "it carries no pooler mark (such VMs are destroyed only with purge_unconfigured: true)"
    return f"it carries the mark of another pooler ({mark}; this one is {mine})"
