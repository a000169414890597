"""Cloning: at most `task_limit` clones at once across all pools and all managers (clone_slots.py), each
recorded before it starts. A clone for an on-demand request (`order`, see ondemand.py) takes the same slots
as a refill.

A clone is first reserved in Redis (add_pending.lua: the hostname, the pending entry, and the checks that
this manager still holds the pool's lease and that ready + pending is below the size, all in one atomic
step), and only then asked of the provider. A crash at any point therefore leaves a pending entry that the
reconciliation can match against the provider's inventory, never a VM that Redis has not heard of.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter

from vmpooler_core import audit, clock
from vmpooler_core.config import PoolConfig
from vmpooler_core.metrics import Phase
from vmpooler_core.ondemand_store import Order, RequestStore
from vmpooler_core.provider import CloneSpec, NameTaken, OutcomeUnknown, Provider, ProviderError
from vmpooler_core.replies import Kept, Reservation

from . import ondemand_vms
from .clone_slots import CloneSlots
from .context import Context, redis_fault
from .hostnames import new_hostname
from .recent import Recent

log = logging.getLogger("vmpooler.manager")
_NAME_ATTEMPTS = 3


class Cloner:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.slots = CloneSlots(ctx)
        self.queued: Counter[str] = Counter()  # pool -> clones waiting for a slot
        self.ordered: Counter[tuple[str, Order]] = Counter()  # (pool, order) -> request clones waiting for a slot
        self.ordered_running = 0  # request clones holding a slot
        self.requests = RequestStore(ctx.inventory)
        self.inflight: dict[str, str] = {}  # host -> pool, from just before its reservation to the end
        self._ended = Recent()  # the clones that ended (see `ended_since`)
        self._waiting: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()
        self.stopping = False

    def hosts(self, pool: str) -> set[str]:
        return {host for host, owner in self.inflight.items() if owner == pool}

    def ended_since(self, moment: float) -> set[str]:
        """Hosts whose clone ended after `moment` (monotonic): an inventory read before that may lack the
        VM while Redis already has it pending, and the pass must not take it for a clone that died."""
        return self._ended.since(moment)

    def start(self, pool: PoolConfig, provider: Provider, order: Order | None = None) -> None:
        """Queue one clone for `pool` (for an on-demand request with `order`); it starts when a slot is free
        (FIFO across pools)."""
        if order is None:
            self.queued[pool.name] += 1
        else:
            self.ordered[pool.name, order] += 1
        task = asyncio.create_task(self._clone(pool, provider, order), name=f"clone {pool.name}")
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
        task.add_done_callback(self._running.discard)

    async def _clone(self, pool: PoolConfig, provider: Provider, order: Order | None) -> None:
        try:
            await self.slots.take()
        except Exception as err:
            _skipped(pool, err)
            return
        finally:
            if order is None:
                self.queued[pool.name] -= 1
            else:
                self.ordered[pool.name, order] -= 1
                if not self.ordered[pool.name, order]:
                    del self.ordered[pool.name, order]
        slot = _Slot(self.slots)
        if order is not None:
            self.ordered_running += 1
        try:
            task = asyncio.current_task()
            if task is not None:
                self._waiting.discard(task)
                self._running.add(task)
            if not self.stopping and self.ctx.leases.holds(pool.name):
                await self._reserve_and_clone(pool, provider, slot, order)
        except Exception as err:  # a bug must not end the manager; the next pass clones again
            _skipped(pool, err)
        finally:
            await slot.release()
            if order is not None:
                self.ordered_running -= 1

    async def _reserve_and_clone(self, pool: PoolConfig, provider: Provider, slot: _Slot,
                                 order: Order | None) -> None:
        template = pool.template or pool.name
        for _ in range(_NAME_ATTEMPTS):
            host = new_hostname(self.ctx.config.app.prefix)
            # In flight before the reservation exists, so that no pass can ever see the pending entry
            # without knowing it is this process's own clone.
            self.inflight[host] = pool.name
            try:
                now = clock.stamp(self.ctx.clock())
                outcome = await self._reserve(pool, host, template, now, order)
                if outcome is Reservation.RESERVED:
                    if not await self._run(pool, provider, host, template, slot, order):
                        return
                    continue  # the provider refused the name: another one
            finally:
                self.inflight.pop(host, None)
                # Once it is all written down (later than the provider's end: the safe side). A host whose
                # reservation failed never existed: no harm.
                self._ended.ended(host)
            if outcome is not Reservation.TAKEN:
                return  # FULL or LEASE_LOST: the pool is full, or another manager has it
        log.error("clone skipped pool=%s: %d hostnames in a row already in use", pool.name, _NAME_ATTEMPTS)

    async def _reserve(self, pool: PoolConfig, host: str, template: str, now: str,
                       order: Order | None) -> Reservation:
        if order is None:
            return await self.ctx.inventory.reserve_clone(
                pool.name, host, template, size=pool.size, owner=self.ctx.owner, now=now,
                history=audit.entry("clone", now, manager=self.ctx.owner, detail=f"template {template}"))
        return await self.requests.reserve(
            pool.name, order, host, template, owner=self.ctx.owner, now=now,
            history=audit.entry("clone", now, manager=self.ctx.owner, request=order.request_id,
                                detail=f"template {template}, on-demand request"))

    async def _run(self, pool: PoolConfig, provider: Provider, host: str, template: str, slot: _Slot,
                   order: Order | None = None) -> bool:
        """The clone of a reserved `host`; True when the provider refused the name (nothing was made and
        the pending entry is gone): the caller tries another name."""
        target = pool.clone_target or self.ctx.config.app.clone_target
        spec = CloneSpec(name=host, template=template, folder=pool.folder or pool.name,
                         datastore=pool.datastore, target=target,
                         annotation=json.dumps({"pool": pool.name, "manager": self.ctx.owner}),
                         timeout=self.ctx.timeout_seconds(pool), pooler_id=self.ctx.pooler_id)
        started = time.monotonic()
        log.info("clone started pool=%s vm=%s template=%s", pool.name, host, template)
        try:
            await self.ctx.runner.clone(provider.clone, pool.name, spec)
        except (NameTaken, OutcomeUnknown) as err:
            return await self._unsettled(pool.name, host, err, slot, order)
        except ProviderError as err:
            await slot.release()
            self.ctx.health.clone_failed(pool.name, err)
            # Out of pending at once, hash kept only for data_ttl (the original kept it forever). If a
            # half-made VM is left behind, the next pass finds it in the folder and destroys it. But only
            # out of pending: the provider can fail the call after the VM was made (vCenter stops
            # answering while the clone task ends), and by then a pass may have found the VM ready and a
            # client checked it out. Such a VM is as good as any other; it stays where it is.
            if order is not None:  # the same, and the request's clone goes back into its task
                await ondemand_vms.lost(self.ctx, self.requests, pool.name, host, f"clone failed: {err}", forget=True)
                return False
            entry = audit.entry("clone failed", clock.stamp(self.ctx.clock()), manager=self.ctx.owner,
                                detail=str(err))
            forgotten = await self.ctx.inventory.forget(pool.name, host, destroyed=False, only_from="pending",
                                                        history=entry)
            if isinstance(forgotten, Kept):
                log.warning("clone reported failed pool=%s vm=%s: %s; the VM had already passed its checks, so "
                            "it is kept", pool.name, host, err)
            else:
                log.warning("clone failed pool=%s vm=%s: %s", pool.name, host, err)
            return False
        finally:
            self.inflight.pop(host, None)
        # The provider's part is over: the next clone may start while this one is written down.
        await slot.release()
        self.ctx.health.clone_done(pool.name)
        seconds = time.monotonic() - started
        await self.ctx.inventory.record_clone(pool.name, host, seconds, clock.today(self.ctx.clock()))
        self.ctx.metrics.duration(Phase.CLONE, pool.name, seconds)
        log.info("clone done pool=%s vm=%s seconds=%.1f", pool.name, host, seconds)
        self.ctx.poke(pool.name)
        return False

    async def _unsettled(self, pool: str, host: str, err: ProviderError, slot: _Slot, order: Order | None) -> bool:
        """A clone that neither failed nor succeeded. Its name taken: nothing was made, the pending entry
        goes and the caller tries another name (a request's clone goes back into its request's task, and is
        cloned again under another name from there). Its outcome unknown: the pending entry stays, and the
        reconciliation adopts the VM if it turns up, or forgets the entry once vCenter shows neither the
        VM nor a clone task that could be making it."""
        if isinstance(err, OutcomeUnknown):
            await slot.release()
            log.warning("clone outcome unknown pool=%s vm=%s: %s; left pending for the reconciliation", pool,
                        host, err)
            return False
        if order is not None:
            await slot.release()
            await ondemand_vms.lost(self.ctx, self.requests, pool, host, f"name taken: {err}", forget=True)
            return False
        entry = audit.entry("clone renamed", clock.stamp(self.ctx.clock()), manager=self.ctx.owner,
                            detail=str(err))
        await self.ctx.inventory.forget(pool, host, destroyed=False, only_from="pending", history=entry)
        log.info("clone name taken pool=%s vm=%s: %s; cloning under another name", pool, host, err)
        return True  # its slot kept for the next name

    async def drain(self) -> None:
        """Wait until every queued and running clone has ended (tests, and a bounded stop)."""
        while self._waiting or self._running:
            await asyncio.gather(*(self._waiting | self._running), return_exceptions=True)

    async def stop(self, grace: float) -> None:
        """Drop the clones still waiting for a slot; give the running ones `grace` seconds to finish and
        be recorded. A clone still running after that is left to the provider: its pending entry stays,
        and the reconciliation of the next manager matches it to whatever the provider ends up with."""
        self.stopping = True
        for task in list(self._waiting):
            task.cancel()
        running = list(self._running | self._waiting)
        if not running:
            return
        if self._running:
            log.info("stopping: waiting up to %.0fs for %d clone(s) to finish", grace, len(self._running))
        _, left = await asyncio.wait(running, timeout=grace)
        if left:
            log.warning("stopping: %d clone(s) still running after %.0fs, left to the provider; their pending "
                        "entries stay for the next manager to match", len(left), grace)


def _skipped(pool: PoolConfig, err: Exception) -> None:
    if redis_fault(err):
        log.debug("clone skipped pool=%s: redis: %s", pool.name, err)  # the pass logs the outage
    else:
        log.exception("clone crashed pool=%s", pool.name)


class _Slot:
    """One of the `task_limit` clone slots, given back once: as soon as the provider's part of the clone
    is over, or at the very end if it never started."""

    def __init__(self, slots: CloneSlots) -> None:
        self._slots = slots
        self._held = True

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._slots.give()
