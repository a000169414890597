"""The service-wide `/status` document (era A shape plus the late-2016 `pools` block).

Added to the original's shape, only once a manager has reported on the providers: a `providers` block
(each provider's health) and, in a pool short of VMs whose provider is degraded, its `reason`; and, once a
login has asked the LDAP directory, a `directory` block (directory_health.py).
"""

from __future__ import annotations

import time
from typing import Any

from . import clock, directory_health, provider_health
from .config import Config
from .inventory import Inventory
from .replies import Durations


def _durations(figures: Durations) -> dict[str, Any]:
    count, total = figures.count, figures.total
    return {
        "duration": {"average": round(total / count, 2) if count else 0, "min": round(figures.low, 2),
                     "max": round(figures.high, 2), "total": round(total, 2)},
        "count": {"total": count},
    }


async def status(config: Config, inventory: Inventory, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    names = [pool.name for pool in config.pools]
    figures = await inventory.status_figures(names, clock.today(now))
    # One after the other, not side by side: a burst of /status requests must not take twice the
    # connections of the pool (which refuses, rather than waits, past its size).
    health = await provider_health.read(config, inventory, now)
    pools: dict[str, Any] = {}
    totals = {"ready": 0, "running": 0, "pending": 0, "completed": 0}
    empty: list[str] = []
    for pool in config.pools:
        counts = figures.pools[pool.name]
        ready, running, pending, completed = counts.ready, counts.running, counts.pending, counts.completed
        entry: dict[str, Any] = {"ready": ready, "running": running, "pending": pending, "max": pool.size}
        if pool.alias:
            entry["alias"] = list(pool.alias)
        provider = health.get(pool.provider)
        why = provider.why_short(pool.name) if provider is not None and ready < pool.size else None
        if why:
            entry["reason"] = why
        pools[pool.name] = entry
        for state, value in (("ready", ready), ("running", running), ("pending", pending),
                             ("completed", completed)):
            totals[state] += value
        if ready == 0 and pool.size > 0:  # a size-0 pool is meant to be empty
            empty.append(pool.name)
    size = sum(pool.size for pool in config.pools)
    summary: dict[str, Any] = {
        "ok": not empty,
        "message": f"Found {len(empty)} empty pools." if empty else "Battle station fully armed and operational.",
    }
    if empty:
        summary["empty"] = empty
    summary["uptime"] = round(now - config.loaded_at, 1)
    doc: dict[str, Any] = {
        "boot": _durations(figures.boot),
        "capacity": {"current": totals["ready"], "total": size,
                     "percent": round(100.0 * totals["ready"] / size, 1) if size else 0},
        "clone": _durations(figures.clone),
        "pools": pools,
        "queue": {"pending": totals["pending"], "cloning": figures.cloning,
                  "booting": max(0, totals["pending"] - figures.cloning), "ready": totals["ready"],
                  "running": totals["running"], "completed": totals["completed"],
                  "total": sum(totals.values())},
        "status": summary,
    }
    providers = provider_health.block(health)
    directory = directory_health.block(await directory_health.read(config, inventory, now))
    added = {**({"providers": providers} if providers is not None else {}),
             **({"directory": directory} if directory is not None else {})}
    # The original sorts the top level: `providers` goes between `pools` and `queue`, `directory` first.
    return dict(sorted({**doc, **added}.items())) if added else doc
