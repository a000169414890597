"""The per-state rules of a pass: running VMs past their lifetime, ready VMs re-checked and expired,
pending VMs promoted or timed out, completed VMs destroyed. Only VMs the provider reported are judged
here; those it lacks were dealt with by reconcile.py."""

from __future__ import annotations

import asyncio
import logging

from vmpooler_core import clock
from vmpooler_core.metrics import Phase
from vmpooler_core.provider_health import UNREADY

from . import ondemand_vms
from .pool_pass import PoolPass

log = logging.getLogger("vmpooler.manager")
_PROBE_LIMIT = 64  # readiness probes of one pass running at once


async def expire_running(p: PoolPass) -> None:
    for host in sorted(p.sets["running"] & p.facts.keys()):
        since = clock.parse(p.active.get(host)) or clock.parse(p.field(host, "checkout"))
        if since is None:
            # No checkout time at all (data from elsewhere): start the clock now rather than let the VM
            # live forever (B7.10) or destroy a VM that someone may be using.
            await p.ctx.inventory.start_lifetime(p.name, host, clock.stamp(p.now))
            continue
        hours = p.ctx.config.lifetime_hours(p.field(host, "lifetime"))
        if hours > 0 and p.now - since >= hours * 3600:
            await p.move(host, "running", "completed", f"lifetime of {hours}h reached")


async def _probe_all(p: PoolPass, hosts: list[str], recheck: bool) -> dict[str, str | None]:
    limit = asyncio.Semaphore(_PROBE_LIMIT)

    async def one(host: str) -> str | None:
        async with limit:
            if recheck:
                return await p.probe.still_ready(host, p.facts[host])
            return await p.probe.booted(host, p.facts[host])

    results = await asyncio.gather(*(one(host) for host in hosts))
    return dict(zip(hosts, results, strict=True))


async def check_ready(p: PoolPass) -> None:
    ttl = p.pool.ready_ttl if p.pool.ready_ttl is not None else p.ctx.config.app.ready_ttl
    every = p.ctx.config.app.vm_checktime * 60
    due: list[str] = []
    for host in sorted(p.sets["ready"] & p.facts.keys()):
        ready_for = p.age(host, "ready")
        if ready_for is None:
            ready_for = p.age(host, "clone")
        # ready_ttl 0 or unset means no expiry, as in the original's first era (B7.22).
        if ttl and ready_for is not None and ready_for > ttl * 60:
            await p.move(host, "ready", "completed", f"ready for over {ttl} minutes (ready_ttl)")
            continue
        checked = p.age(host, "check")
        suspect_due = p.probe.watch.due(host, p.now)
        if suspect_due or (suspect_due is None and (checked is None or checked >= every)):
            due.append(host)
    # Retired only as readiness.ReadyWatch judges: a VM that cannot be reached is checked again first.
    verdict = p.probe.watch.judge(await _probe_all(p, due, recheck=True), p.sets["ready"], p.now)
    for host, reason in verdict.retire.items():
        await p.move(host, "ready", "completed", reason, level=logging.WARNING)
    if p.ctx.health.holding(p.name, UNREADY, verdict.held):
        log.warning("holding pool=%s: %s", p.name, verdict.held)
    await p.ctx.inventory.set_field_many(verdict.passed, "check", clock.stamp(p.now))


async def check_pending(p: PoolPass) -> None:
    hosts = sorted(p.sets["pending"] & p.facts.keys())
    timeout = p.ctx.timeout_seconds(p.pool)
    for host, reason in (await _probe_all(p, hosts, recheck=False)).items():
        age = p.age(host, "clone")
        if ondemand_vms.ordered(p, host):  # cloned for an on-demand request: delivered to it, or cloned again
            if reason is None:
                await ondemand_vms.deliver(p, host)
            elif host not in p.protected and (age is None or age > timeout):
                await ondemand_vms.timed_out(p, host, f"not ready after {timeout / 60:.0f} minutes: {reason}")
        elif reason is None:
            stamp = clock.stamp(p.now)  # it has just passed its check, too
            stamps: dict[str, object] = {"ready": stamp, "check": stamp}
            if p.facts[host].guest_ip:  # for `GET /vm/<host>`'s ip: the provider knows it better than DNS
                stamps["ip"] = p.facts[host].guest_ip
            if await p.move(host, "pending", "ready", "ready", stamps):
                if age is not None:
                    await p.ctx.inventory.record_boot(p.name, host, age, clock.today(p.now), at=stamp)
                    p.ctx.metrics.duration(Phase.BOOT, p.name, age)
        elif host not in p.protected and (age is None or age > timeout):
            why = f"not ready after {timeout / 60:.0f} minutes: {reason}"
            await p.move(host, "pending", "completed", why, level=logging.WARNING)


def destroy_completed(p: PoolPass) -> None:
    for host in sorted((p.sets["completed"] & p.facts.keys()) - p.protected):
        p.destroyer.start(p.name, p.provider, host)


async def remove_surplus(p: PoolPass) -> None:
    """Ready VMs beyond the pool's size (it was made smaller, or its demand fell) go to completed, the
    oldest first (the nearest to `ready_ttl`, and the longest unused). A VM a checkout takes meanwhile
    stays the client's: move.lua moves it only if it is still ready."""
    surplus = len(p.sets["ready"]) - p.pool.size
    if surplus <= 0:
        return
    oldest = sorted(p.sets["ready"], key=lambda host: (-(p.age(host, "ready") or p.age(host, "clone") or 0.0), host))
    for host in oldest[:surplus]:
        await p.move(host, "ready", "completed", f"pool size is {p.pool.size}")


async def drain(p: PoolPass, reason: str) -> None:
    """Replace the pool's ready and pending VMs (a new template or clone target, a reset): to completed,
    to be destroyed; the fill makes new ones."""
    for state in ("ready", "pending"):
        for host in sorted(p.sets[state]):
            await p.move(host, state, "completed", reason)
