"""The pools' run-time settings (API v3's pool configuration API, vmpooler_core/pool_settings.py), taken
up at every pass without a restart:

- a size, template or clone target set through the API is the pool's until it is deleted; the fill, the
  surplus and the clones of the pass use it;
- a new template or clone target set through the API (or the file's again after the API's is deleted)
  replaces the pool's ready and pending VMs, made from the old one: they are moved to completed (and
  destroyed) and the fill makes new ones. What the pool's VMs are made from is recorded per pool (the
  original's `vmpooler__template__prepared`, and ours for the clone target), so a restarted manager does
  not replace them a second time, and a template changed in the file alone is taken up as before:
  without replacing VMs already made;
- a reset (`vmpooler__poolreset`) replaces them too.

The records and the original's request sets (`vmpooler__pool__undo_*_override`, `vmpooler__poolreset`)
are written once the pass that replaced the VMs is over: a manager that dies before replaces them again,
which costs VMs, never leaves VMs of the old template. Only the manager holding a pool's lease acts on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmpooler_core import pool_records, pool_settings
from vmpooler_core.config import PoolConfig
from vmpooler_core.pool_settings import CLONE_TARGET, TEMPLATE, template_of

from .context import Context

log = logging.getLogger("vmpooler.manager")
Command = tuple[str, ...]


@dataclass
class Plan:
    pool: PoolConfig  # as this pass runs it
    drain: str | None = None  # why its ready and pending VMs are replaced this pass, if they are
    settle: list[Command] = field(default_factory=list)  # written once the pass is over


@dataclass(frozen=True, slots=True)
class _Read:
    overrides: pool_settings.Overrides
    prepared: dict[str, dict[str, str]]  # TEMPLATE / CLONE_TARGET -> pool -> value
    undo_template: set[str]
    undo_size: set[str]
    reset: set[str]


class PoolSettings:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.inventory.keys
        self._running: dict[str, PoolConfig] = {}  # as last run, to log each change once

    async def _read(self) -> _Read:
        pipe = self.ctx.inventory.redis.pipeline(transaction=False)
        for setting in (pool_settings.SIZE, TEMPLATE, CLONE_TARGET):
            pipe.hgetall(self.keys.pool_settings(setting))
        for setting in (TEMPLATE, CLONE_TARGET):
            pipe.hgetall(self.keys.prepared(setting))
        pipe.smembers(self.keys.undo_override("template"))
        pipe.smembers(self.keys.undo_override("size"))
        pipe.smembers(self.keys.pool_reset())
        sizes, templates, targets, made_from, made_for, undo_template, undo_size, reset = await pipe.execute()
        return _Read(pool_settings.parse([sizes, templates, targets]), {TEMPLATE: made_from, CLONE_TARGET: made_for},
                     set(undo_template), set(undo_size), set(reset))

    async def plan(self, pools: Iterable[PoolConfig]) -> dict[str, Plan]:
        """Each pool as this pass runs it (`pools`: as the file has them), one Redis round trip."""
        pools = list(pools)
        if not pools:
            return {}
        read = await self._read()
        return {pool.name: self._plan(pool, read) for pool in pools}

    def _plan(self, base: PoolConfig, read: _Read) -> Plan:
        name = base.name
        plan = Plan(read.overrides.apply(base))
        self._log_change(plan.pool)
        reasons: list[str] = []
        wanted = {TEMPLATE: template_of(plan.pool),
                  CLONE_TARGET: plan.pool.clone_target or self.ctx.config.app.clone_target or ""}
        by_api = {TEMPLATE: name in read.overrides.template or name in read.undo_template,
                  CLONE_TARGET: name in read.overrides.clone_target}
        for setting in (TEMPLATE, CLONE_TARGET):
            made = read.prepared[setting].get(name)
            if made == wanted[setting]:
                continue
            if made is not None and by_api[setting]:
                reasons.append(f"{setting.replace('_', ' ')} changed to {wanted[setting] or 'the default'}")
            plan.settle.append(("HSET", self.keys.prepared(setting), name, wanted[setting]))
        if name in read.reset:
            reasons.append("pool reset requested")
            plan.settle.append(("SREM", self.keys.pool_reset(), name))
        for undo, key in ((read.undo_template, "template"), (read.undo_size, "size")):
            if name in undo:
                plan.settle.append(("SREM", self.keys.undo_override(key), name))
        plan.drain = "; ".join(reasons) or None
        return plan

    def _log_change(self, pool: PoolConfig) -> None:
        before = self._running.get(pool.name)
        self._running[pool.name] = pool
        if before is None or before == pool:
            return
        for what, old, new in (("size", before.size, pool.size), ("template", before.template, pool.template),
                               ("clone target", before.clone_target, pool.clone_target)):
            if old != new:
                log.info("pool %s now %s pool=%s (was %s)", what, new, pool.name, old)

    async def settle(self, plan: Plan) -> None:
        """Record what the pass did (its pool's VMs replaced, the requests taken up)."""
        if plan.settle:
            await self.ctx.inventory.write(*(tuple(str(word) for word in command) for command in plan.settle))

    async def publish(self, pools: Iterable[PoolConfig]) -> None:
        """Each pool's configuration in the original's `vmpooler__pool__<name>` hash, which API-only
        processes (the original's and ours) read when their own configuration has no pools."""
        writes = [("HSET", self.keys.pool_record(pool.name), *(item for pair in pool_records.record(pool).items()
                                                              for item in pair)) for pool in pools]
        if writes:
            await self.ctx.inventory.write(*writes)
