"""The service-wide `/status` document (era A shape plus the late-2016 `pools` block), and API v3's.

Added to the original's shape, only once a manager has reported on the providers: a `providers` block
(each provider's health) and, in a pool short of VMs whose provider is degraded, its `reason`; and, once a
login has asked the LDAP directory, a `directory` block (directory_health.py).

A pool's `max` is its size as the manager keeps it: the one set through the pool configuration API
(API v3) when there is one, else the file's. A pool sized to demand (with a `max_size`) also has, once a
manager has sized it, a `target`: the size the manager keeps it at now, within `max` (its floor) and
`max_size`, and why (demand.Target.document).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import clock, directory_health, provider_health
from .config import Config, PoolConfig
from .demand import Target
from .inventory import Inventory
from .pool_settings import size_from
from .replies import Durations, PoolFigures, StatusFigures

# API v3's sections; `status` is always there, `?view=a,b` picks among the others.
V3_VIEWS = ("boot", "capacity", "clone", "pools", "queue")


def _durations(figures: Durations) -> dict[str, Any]:
    count, total = figures.count, figures.total
    return {
        "duration": {"average": round(total / count, 2) if count else 0, "min": round(figures.low, 2),
                     "max": round(figures.high, 2), "total": round(total, 2)},
        "count": {"total": count},
    }


def size_of(pool: PoolConfig, counts: PoolFigures) -> int:
    return counts.size if counts.size is not None else pool.size


@dataclass(frozen=True, slots=True)
class _Read:
    figures: StatusFigures
    health: dict[str, provider_health.ProviderHealth]
    directory: dict[str, directory_health.HostHealth]
    now: float
    targets: dict[str, Target]

    def counts(self, pool: PoolConfig) -> PoolFigures:
        return self.figures.pools[pool.name]


async def _read(config: Config, inventory: Inventory, now: float | None) -> _Read:
    now = time.time() if now is None else now
    figures = await inventory.status_figures([pool.name for pool in config.pools], clock.today(now))
    # One after the other, not side by side: a burst of /status requests must not take twice the
    # connections of the pool (which refuses, rather than waits, past its size).
    health = await provider_health.read(config, inventory, now)
    directory = await directory_health.read(config, inventory, now)
    return _Read(figures, health, directory, now, await targets(config, inventory))


async def targets(config: Config, inventory: Inventory) -> dict[str, Target]:
    """The pools sized to demand that a manager has sized: pool -> its target (no round trip without any)."""
    names = sorted(config.demand_pools)
    if not names:
        return {}
    raw = await inventory.redis.hmget(inventory.keys.sizing(), names)
    found = {name: Target.from_json(None if value is None else str(value))
             for name, value in zip(names, raw, strict=True)}
    return {name: target for name, target in found.items() if target is not None}


def _pool_entry(read: _Read, pool: PoolConfig, entry: dict[str, Any]) -> dict[str, Any]:
    if pool.alias:
        entry["alias"] = list(pool.alias)
    counts = read.counts(pool)
    provider = read.health.get(pool.provider)
    why = provider.why_short(pool.name) if provider is not None and counts.ready < size_of(pool, counts) else None
    if why:
        entry["reason"] = why
    target = read.targets.get(pool.name)
    if target is not None:
        entry["target"] = {**target.document(), "at": clock.stamp(target.at)}
    return entry


def _summary(config: Config, read: _Read) -> dict[str, Any]:
    # A size-0 pool is meant to be empty.
    empty = [p.name for p in config.pools if read.counts(p).ready == 0 and size_of(p, read.counts(p)) > 0]
    summary: dict[str, Any] = {
        "ok": not empty,
        "message": f"Found {len(empty)} empty pools." if empty else "Battle station fully armed and operational.",
    }
    if empty:
        summary["empty"] = empty
    summary["uptime"] = round(read.now - config.loaded_at, 1)
    return summary


def _totals(config: Config, read: _Read) -> dict[str, int]:
    totals = {"ready": 0, "running": 0, "pending": 0, "completed": 0}
    for pool in config.pools:
        counts = read.counts(pool)
        for state, value in (("ready", counts.ready), ("running", counts.running), ("pending", counts.pending),
                             ("completed", counts.completed)):
            totals[state] += value
    return totals


def _capacity(config: Config, read: _Read, totals: dict[str, int]) -> dict[str, Any]:
    size = sum(size_of(pool, read.counts(pool)) for pool in config.pools)
    return {"current": totals["ready"], "total": size,
            "percent": round(100.0 * totals["ready"] / size, 1) if size else 0}


def _queue(read: _Read, totals: dict[str, int]) -> dict[str, int]:
    cloning = read.figures.cloning
    return {"pending": totals["pending"], "cloning": cloning, "booting": max(0, totals["pending"] - cloning),
            "ready": totals["ready"], "running": totals["running"], "completed": totals["completed"],
            "total": sum(totals.values())}


def _with_providers(doc: dict[str, Any], read: _Read) -> dict[str, Any]:
    providers = provider_health.block(read.health)
    directory = directory_health.block(read.directory)
    added = {**({"providers": providers} if providers is not None else {}),
             **({"directory": directory} if directory is not None else {})}
    # The original sorts the top level: `providers` goes between `pools` and `queue`, `directory` first.
    return dict(sorted({**doc, **added}.items())) if added else doc


async def status(config: Config, inventory: Inventory, now: float | None = None) -> dict[str, Any]:
    read = await _read(config, inventory, now)
    pools: dict[str, Any] = {}
    for pool in config.pools:
        counts = read.counts(pool)
        pools[pool.name] = _pool_entry(read, pool, {"ready": counts.ready, "running": counts.running,
                                                    "pending": counts.pending, "max": size_of(pool, counts)})
    totals = _totals(config, read)
    doc: dict[str, Any] = {
        "boot": _durations(read.figures.boot),
        "capacity": _capacity(config, read, totals),
        "clone": _durations(read.figures.clone),
        "pools": pools,
        "queue": _queue(read, totals),
        "status": _summary(config, read),
    }
    return _with_providers(doc, read)


async def status_v3(config: Config, inventory: Inventory, views: Iterable[str] | None = None,
                    now: float | None = None) -> dict[str, Any]:
    """API v3's document: each pool also has `lastBoot` (when a VM of it last became ready, "" when
    never recorded), `queue` also `requested`: the on-demand requests not yet filled (the original's count
    read keys that never exist, and was always 0); `views` (None: all) names the sections wanted beside
    `status`, which is always there."""
    wanted = set(V3_VIEWS if views is None else views)
    read = await _read(config, inventory, now)
    totals = _totals(config, read)
    doc: dict[str, Any] = {"status": _summary(config, read)}
    if "boot" in wanted:
        doc["boot"] = _durations(read.figures.boot)
    if "capacity" in wanted:
        doc["capacity"] = _capacity(config, read, totals)
    if "clone" in wanted:
        doc["clone"] = _durations(read.figures.clone)
    if "pools" in wanted:
        pools: dict[str, Any] = {}
        for pool in config.pools:
            counts = read.counts(pool)
            pools[pool.name] = _pool_entry(read, pool, {
                "ready": counts.ready, "running": counts.running, "pending": counts.pending,
                "max": size_of(pool, counts), "lastBoot": counts.lastboot})
        doc["pools"] = pools
    if "queue" in wanted:
        doc["queue"] = {"requested": await _requested(inventory), **_queue(read, totals)}
    return _with_providers(dict(sorted(doc.items())), read)


async def _requested(inventory: Inventory) -> int:
    pipe = inventory.redis.pipeline(transaction=False)
    pipe.zcard(inventory.keys.ondemand_new())
    pipe.zcard(inventory.keys.ondemand_processing())
    return sum(int(count) for count in await pipe.execute())


async def poolstat(config: Config, inventory: Inventory, names: Iterable[str]) -> dict[str, Any]:
    """`{"pools": {<pool>: {"max", "alias"?, "ready"}}}` for the pools named, by name or by alias."""
    asked = set(names)
    chosen = [pool for pool in config.pools if pool.name in asked or asked & set(pool.alias)]
    if not chosen:
        return {"pools": {}}
    # One round trip, O(pools): the original's fast alternative to /status.
    pipe = inventory.redis.pipeline(transaction=False)
    for pool in chosen:
        pipe.scard(inventory.keys.ready(pool.name))
    pipe.hmget(inventory.keys.pool_settings("poolsize"), [pool.name for pool in chosen])
    *ready, sizes = await pipe.execute()
    pools: dict[str, Any] = {}
    for pool, count, size in zip(chosen, ready, sizes, strict=True):
        entry: dict[str, Any] = {"max": size_from(pool, size)}
        if pool.alias:
            entry["alias"] = list(pool.alias)
        entry["ready"] = int(count)
        pools[pool.name] = entry
    return {"pools": pools}


async def total_running(config: Config, inventory: Inventory) -> int:
    counts = await inventory.counts([pool.name for pool in config.pools])
    return sum(pool["running"] for pool in counts.values())
