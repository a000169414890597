"""Pools sized to demand, the manager's side (the forecast is vmpooler_core/demand.py's).

Each pass, before the pools are worked, the pools with a `max_size` get this pass's size (their target):
the forecast of what they are asked for (read from the API's counts in one round trip, on Redis's clock),
within their floor and `max_size`, and within their provider's `max_vms`. The pass then runs as for any
pool: it clones up to the target (add_pending.lua checks the size atomically), and `remove_surplus`
destroys the oldest ready VMs beyond it (move.lua moves a VM out of `ready` only if no checkout took it
first). Growth clones take the shared `task_limit` slots like any refill (clone_slots.py), handed out
round-robin across pools.

The floor is the pool's size as the pass runs it: the file's `size`, or the size set through the pool
configuration API (API v3), which so moves the floor; one set above `max_size` pins the pool at it.

A provider's `max_vms` bounds growth above the floors: a pool grows only while the provider's VMs (in
every state, over all its pools, as Redis counts them at the start of the pass) leave room, the room
handed out one VM at a time across its growing pools. Floors are kept whatever the cap. Two managers
growing pools of one provider in the same pass may overshoot it by their growth of that pass.

Each pass also records, beside the pool's ring, the figure of the hour for the daily profile (demand.py):
written when the hour's figure is new or higher, so at least once an hour.

The target is written (`<prefix>__sizing`) when it changes, and at least once a bucket, for /status,
Prometheus and `vmpooler pools`; a change of size is logged once, by the manager that made it (a
restarted manager reads the record back and does not log it again). Nothing is kept only in memory
that a restart needs: the counts, the profile and the records are in Redis, and the refill time (kept in
memory, over the pool's last VMs made ready) is measured again on the ready VMs at a restart's first pass.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from vmpooler_core import clock, demand
from vmpooler_core.config import PoolConfig
from vmpooler_core.demand import PROVIDER_CAP, Target
from vmpooler_core.keys import STATES
from vmpooler_core.metrics import Figure

from .context import Context, redis_fault
from .pool_pass import PoolPass

log = logging.getLogger("vmpooler.manager")
GUESS_REFILL = 180.0  # seconds, until a pool has a ready VM to measure (a linked clone and its boot)


def refill_of(p: PoolPass, samples: demand.RefillSamples) -> float | None:
    """The pool's refill time at the end of its pass: clone start to ready over its last VMs made ready
    (`samples`, the ready VMs of this pass added; those this pass made ready, now), plus a pass (a checkout
    is seen, and a clone started, at the next pass). None before it has had a ready VM to measure."""
    for host in sorted(p.sets["ready"]):
        cloned = clock.parse(p.field(host, "clone"))
        if cloned is not None:
            samples.add(host, (clock.parse(p.field(host, "ready")) or p.now) - cloned)
    measured = samples.time()
    return None if measured is None else measured + p.ctx.config.app.manager_loop_seconds


class Measured(Protocol):
    refill: float | None  # the pool's refill time at its last pass (refill_of)


@dataclass(frozen=True, slots=True)
class _Read:
    now: float  # Redis's clock
    rings: dict[str, dict[str, str]]  # pool -> its count ring and profile (one hash)
    counts: dict[str, dict[str, int]]  # pool -> state -> VMs
    kept: dict[str, str] | None  # pool -> record as written (read once, at the first pass)


class DemandSizing:
    def __init__(self, ctx: Context, refills: Mapping[str, Measured]) -> None:
        self.ctx = ctx
        self.settings = ctx.config.demand
        self.refills = refills  # pool -> its worker, whose `refill` is the last measured
        self.kept: dict[str, Target] | None = None  # pool -> the record as last written

    async def size(self, pools: Mapping[str, PoolConfig]) -> dict[str, PoolConfig]:
        """The pools as this pass runs them: those sized to demand with their target as size."""
        sized = [pool for pool in pools.values() if pool.max_size is not None]
        if not sized:
            return dict(pools)
        try:
            targets = await self._targets(sized)
        except Exception as err:
            if redis_fault(err):
                raise  # the pass's Redis outage
            log.exception("pools not sized to demand this pass")  # a bug must not stop the refills
            return dict(pools)
        return {name: dataclasses.replace(pool, size=targets[name].size) if name in targets else pool
                for name, pool in pools.items()}

    async def _targets(self, sized: list[PoolConfig]) -> dict[str, Target]:
        read = await self._read(sized)
        if self.kept is None:
            self.kept = {pool: target for pool, raw in (read.kept or {}).items()
                         if (target := Target.from_json(raw)) is not None}
        profile: list[tuple[str, ...]] = []  # the hours' figures to record
        targets = {pool.name: self._target(pool, read, profile) for pool in sized}
        self._cap(sized, targets, read)
        await self._record(targets, read.now, profile)
        return targets

    def _capped(self, sized: list[PoolConfig]) -> list[str]:
        """The providers with a `max_vms` that pools sized to demand use."""
        providers = self.ctx.config.providers
        return sorted({pool.provider for pool in sized
                       if pool.provider in providers and providers[pool.provider].max_vms is not None})

    async def _read(self, sized: list[PoolConfig]) -> _Read:
        keys = self.ctx.inventory.keys
        capped = set(self._capped(sized))
        counted = sorted({pool.name for pool in sized}
                         | {pool.name for pool in self.ctx.config.pools if pool.provider in capped})
        pipe = self.ctx.inventory.redis.pipeline(transaction=False)
        pipe.time()
        for pool in sized:
            pipe.hgetall(keys.demand(pool.name))
        for name in counted:
            for state in STATES:
                pipe.scard(keys.state(state, name))
        if self.kept is None:
            pipe.hgetall(keys.sizing())
        replies = await pipe.execute()
        seconds, micros = replies[0]
        rings = dict(zip((pool.name for pool in sized), replies[1:1 + len(sized)], strict=True))
        flat = replies[1 + len(sized):1 + len(sized) + len(counted) * len(STATES)]
        counts = {name: dict(zip(STATES, (int(n) for n in flat[i * len(STATES):(i + 1) * len(STATES)]), strict=True))
                  for i, name in enumerate(counted)}
        return _Read(int(seconds) + int(micros) / 1e6, rings, counts, replies[-1] if self.kept is None else None)

    def _target(self, pool: PoolConfig, read: _Read, profile: list[tuple[str, ...]]) -> Target:
        """The pool's target; the figure of this hour for its profile, when it is new or higher, to `profile`."""
        width, day = self.settings.bucket_seconds, self.settings.day_seconds
        bucket = demand.bucket_of(read.now, width)
        buckets = max(2, round(self.settings.window_seconds / width))
        raw = read.rings[pool.name]
        history = demand.read_ring(raw, bucket, buckets)
        worker = self.refills.get(pool.name)
        kept = (self.kept or {}).get(pool.name)
        refill = worker.refill if worker is not None and worker.refill is not None \
            else kept.refill if kept is not None else GUESS_REFILL
        span = max(1, math.ceil(refill / width))
        hour = demand.hour_of(read.now, day)
        this_hour = history[max(0, len(history) - 1 - (bucket - demand.bucket_of(hour * day / 24, width))):]
        figure, known = max(demand.peaks(this_hour, span)), demand.read_profile(raw)
        if known.get(hour, -1) < figure:
            profile.append(("HSET", self.ctx.inventory.keys.demand(pool.name), demand.profile_field(hour),
                            f"{hour} {figure}"))
        usual = demand.usual(known, {hour, demand.hour_of(read.now + refill + width, day)})
        wanted = demand.forecast(history, width, read.now - bucket * width, refill, usual)
        assert pool.max_size is not None
        return demand.bounded(wanted, pool.size, pool.max_size, read.now)

    def _cap(self, sized: list[PoolConfig], targets: dict[str, Target], read: _Read) -> None:
        """Hold growth within each provider's `max_vms`."""
        for provider in self._capped(sized):
            cap = self.ctx.config.providers[provider].max_vms
            assert cap is not None
            room = cap - sum(sum(read.counts[pool.name].values()) for pool in self.ctx.config.pools
                             if pool.provider == provider)
            have = {pool.name: read.counts[pool.name]["ready"] + read.counts[pool.name]["pending"]
                    for pool in sized if pool.provider == provider}
            growth = {name: targets[name].size - have[name] for name in sorted(have)
                      if targets[name].size > have[name]}
            granted = dict.fromkeys(growth, 0)
            while room > 0 and any(granted[name] < growth[name] for name in growth):
                for name in growth:
                    if room > 0 and granted[name] < growth[name]:
                        granted[name] += 1
                        room -= 1
            for name, wanted in growth.items():
                if granted[name] < wanted:
                    target = targets[name]
                    targets[name] = dataclasses.replace(
                        target, size=max(target.floor, have[name] + granted[name]), limit=PROVIDER_CAP)

    async def _record(self, targets: dict[str, Target], now: float, profile: list[tuple[str, ...]]) -> None:
        assert self.kept is not None
        writes: list[str] = []
        for name, target in targets.items():
            kept = self.kept.get(name)
            self.ctx.metrics.pool_figure(Figure.TARGET, name, target.size)
            if kept is None or kept.size != target.size:
                was = "" if kept is None else f" (was {kept.size})"
                log.info("pool target size now %d pool=%s%s: %s", target.size, name, was, target.why)
            if kept is None or (kept.size, kept.limit) != (target.size, target.limit) \
                    or now - kept.at >= self.settings.bucket_seconds:
                writes += [name, target.to_json()]
                self.kept[name] = target
        if writes or profile:
            await self.ctx.inventory.write(*profile, *((("HSET", self.ctx.inventory.keys.sizing(), *writes),)
                                                       if writes else ()))
