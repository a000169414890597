"""What becomes of a pending VM cloned for an on-demand request (its hash names the request): where a
refill's VM would go pending -> ready, it is delivered to its request; where a refill's VM would be
completed or forgotten, its request gets its clone back (lua/ondemand_lost.lua). Called by the pool pass
(lifecycle.py, reconcile.py) and the cloner."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vmpooler_core import audit, clock
from vmpooler_core.metrics import Phase
from vmpooler_core.ondemand_store import Delivery, Lost, RequestStore

from .context import Context

if TYPE_CHECKING:
    from .pool_pass import PoolPass

log = logging.getLogger("vmpooler.manager")


def ordered(p: PoolPass, host: str) -> bool:
    """Whether the VM was cloned for an on-demand request."""
    return bool(p.field(host, "request_id"))


async def deliver(p: PoolPass, host: str) -> None:
    """The VM passed its ready check: pending -> running, to its request (or to completed when its request
    needs it no more)."""
    stamp = clock.stamp(p.now)
    request = p.field(host, "request_id") or "-"
    auth_hours = p.ctx.config.app.vm_lifetime_auth
    done = await p.cloner.requests.deliver(
        p.name, host, stamp, auth_hours if auth_hours and auth_hours > 0 else None,
        delivered=audit.entry("checkout", stamp, manager=p.ctx.owner, request=request, detail="on-demand request"),
        closed=audit.entry("completed", stamp, manager=p.ctx.owner, request=request,
                           detail="its on-demand request is closed or filled"))
    if done is Delivery.NOT_PENDING:
        return
    p.sets["pending"].discard(host)
    if done is Delivery.CLOSED:
        p.sets["completed"].add(host)
        log.info("pending -> completed pool=%s vm=%s request=%s: its on-demand request is closed or filled",
                 p.name, host, request)
        return
    p.sets["running"].add(host)
    log.info("pending -> running pool=%s vm=%s request=%s: delivered to its on-demand request%s", p.name, host,
             request, ", which is now ready" if done is Delivery.FILLED else "")
    age = p.age(host, "clone")
    if age is not None:
        await p.ctx.inventory.record_boot(p.name, host, age, clock.today(p.now))
        p.ctx.metrics.duration(Phase.BOOT, p.name, age)


async def lost(ctx: Context, store: RequestStore, pool: str, host: str, reason: str, *, forget: bool,
               retry: bool = True) -> Lost:
    """The VM leaves pending (forgotten, or to completed to be destroyed) and its request's clone goes back
    into the request's task. `retry`: counts against the request's retries (not for a dead manager's clone)."""
    stamp = clock.stamp(ctx.clock())
    result = await store.lost(
        pool, host, forget=forget, retry=retry, max_retries=ctx.config.ondemand.max_vm_retries,
        history=audit.entry("forgotten" if forget else "completed", stamp, manager=ctx.owner, detail=reason),
        reason=reason, released=audit.entry("completed", stamp, manager=ctx.owner,
                                            detail="its on-demand request failed"))
    if result is Lost.NOT_PENDING:
        if forget:  # the cloner's case: the provider failed the call after the VM had passed its checks
            log.warning("clone reported failed pool=%s vm=%s: %s; the VM had already passed its checks, so it is "
                        "kept", pool, host, reason)
        return result
    what = "forgotten" if forget else "pending -> completed"
    if result is Lost.FAILED:
        log.warning("%s pool=%s vm=%s: %s; its on-demand request failed: out of retries (max_vm_retries %d)",
                    what, pool, host, reason, ctx.config.ondemand.max_vm_retries)
    elif result is Lost.PUT_BACK:
        log.warning("%s pool=%s vm=%s: %s; cloned again for its on-demand request", what, pool, host, reason)
    else:
        log.warning("%s pool=%s vm=%s: %s", what, pool, host, reason)
    return result


async def timed_out(p: PoolPass, host: str, reason: str) -> None:
    """Never ready in time: pending -> completed (destroyed), its clone back in its request's task."""
    if await lost(p.ctx, p.cloner.requests, p.name, host, reason, forget=False) is not Lost.NOT_PENDING:
        p.sets["pending"].discard(host)
        p.sets["completed"].add(host)


async def vanished(p: PoolPass, host: str, reason: str) -> None:
    """Its clone ended without a VM (its manager died, most likely): forgotten, its clone back in its
    request's task. Not counted against the request's retries: nothing failed that a retry would not redo."""
    if await lost(p.ctx, p.cloner.requests, p.name, host, reason, forget=True, retry=False) is not Lost.NOT_PENDING:
        p.sets["pending"].discard(host)
