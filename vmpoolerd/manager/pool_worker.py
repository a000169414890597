"""One pool's pass, in the original's order (A4): inventory, running, ready, pending, completed,
discovered, then the fill, which the manager hands out across pools (see `Manager`)."""

from __future__ import annotations

import logging

from vmpooler_core.config import PoolConfig
from vmpooler_core.demand import RefillSamples
from vmpooler_core.metrics import Figure
from vmpooler_core.provider import Provider

from . import demand, lifecycle, listing, reconcile
from .cloner import Cloner
from .context import Context
from .destroyer import Destroyer
from .listing import Listed
from .pool_pass import FIELDS, PoolPass
from .readiness import Probe

log = logging.getLogger("vmpooler.manager")


class PoolWorker:
    def __init__(self, ctx: Context, pool: PoolConfig, provider: Provider, cloner: Cloner,
                 destroyer: Destroyer) -> None:
        self.ctx = ctx
        self.base = pool  # as the file has it
        self.pool = pool  # as this pass runs it: with the settings made through the API (pool_settings.py)
        self.provider = provider
        self.cloner = cloner
        self.destroyer = destroyer
        self.probe = Probe(pool.ready_check or provider.ready_check, pool.ready_check_port, pool.domain)
        self._empty: bool | None = None  # the empty marker as last written (None: not yet)
        # Until the pool has once been full (since this manager started), it is filling, not empty: its
        # first fill logs no "pool empty" warnings, only when it is full.
        self._filled = False
        self.refill: float | None = None  # sized to demand: its refill time at the last pass (demand.py)
        self.refill_samples = RefillSamples()  # and the clone times it is measured on

    async def _read(self, listed: Listed | BaseException | None = None) -> PoolPass:
        name = self.pool.name
        if listed is None:
            listed = await listing.read_one(self.ctx, self.cloner, self.pool, self.provider)
        elif isinstance(listed, BaseException):
            # The pass's read of this pool failed: the pool's pass fails with it (its traceback dropped:
            # one error raised in many pools' tasks would pile all their frames onto one).
            raise listed.with_traceback(None)
        sets, active, spared = await self.ctx.inventory.pool_state(name)
        hosts = sorted(sets["pending"] | sets["ready"] | sets["running"])
        raw = await self.ctx.inventory.vms(hosts, FIELDS)
        protected = (listed.in_flight | self.cloner.hosts(name) | self.cloner.ended_since(listed.read_at)
                     | set(self.destroyer.inflight) | self.destroyer.gone_since(listed.read_at))
        fields = {host: dict(zip(FIELDS, values, strict=True)) for host, values in raw.items()}
        return PoolPass(self.ctx, self.cloner, self.destroyer, self.pool, self.provider, self.probe, listed.facts,
                        sets, active, fields, self.ctx.clock(), protected, spared)

    async def check(self, drain: str | None = None, listed: Listed | BaseException | None = None) -> int:
        """One pass over the pool; returns how many clones it is short of its size. `drain`: why the pool's
        ready and pending VMs are to be replaced this pass, if they are. `listed`: its inventory, as the
        pass read it for all pools (listing.py), or what that read raised; None: read it here."""
        p = await self._read(listed)
        await reconcile.forget_vanished(p)
        await reconcile.forget_dead_pending(p)
        if drain:
            await lifecycle.drain(p, drain)
        await lifecycle.expire_running(p)
        await lifecycle.check_ready(p)
        await lifecycle.check_pending(p)
        lifecycle.destroy_completed(p)
        await reconcile.discover(p)
        await lifecycle.remove_surplus(p)
        if self.base.max_size is not None:
            self.refill = demand.refill_of(p, self.refill_samples) or self.refill
        await self._report(p)
        name = self.pool.name
        pending = p.sets["pending"] | self.cloner.hosts(name)
        return max(0, self.pool.size - len(p.sets["ready"]) - len(pending) - self.cloner.queued[name])

    async def _report(self, p: PoolPass) -> None:
        ready = len(p.sets["ready"])
        self.ctx.metrics.pool_figure(Figure.READY, p.name, ready)
        self.ctx.metrics.pool_figure(Figure.RUNNING, p.name, len(p.sets["running"]))
        empty = ready == 0 and self.pool.size > 0
        if empty != self._empty:
            changed = await self.ctx.inventory.mark_empty(p.name, empty)
            if self._filled and changed and empty:
                log.warning("pool empty pool=%s: no ready VMs", p.name)
            elif self._filled and changed:
                log.info("pool refilled pool=%s ready=%d", p.name, ready)
            self._empty = empty
        if not self._filled and ready >= self.pool.size:
            self._filled = True
            if ready:
                log.info("pool filled pool=%s ready=%d", p.name, ready)
