"""The dashboard's JSON, filled from the pools' one-minute samples (vmpooler_core/pool_history.py), so that
it needs no graphite:

- `/dashboard/stats/vmpooler/pool[?history=1]` and `/dashboard/stats/vmpooler/running[?history=1]` in the
  original's shapes. The original read `history` from graphite (the last hour of its `ready.<pool>` and
  `running.<pool>` gauges, each empty point filled with the value before it); here it is the last hour of
  samples, one value a minute, oldest first, a gap between two samples filled the same way. A pool with no
  sample in the last hour has the original's answer without graphite, `[<ready now>]`; a family with none,
  no `history`, as there.
- `/dashboard/stats/vmpooler/history?hours=N` (1 to 24, default 6), what the page draws: per pool, its
  series over the last N hours in at most MAX_POINTS buckets (a bucket's lowest ready count, so that a
  pool that ran dry shows it; its highest pending and running; its last size and target; the sums of its
  checkouts and refusals; null where no sample was taken), its recent clone and boot times (median and
  slowest), and the running VMs of each family over the same buckets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import pool_history
from vmpooler_core.errors import InvalidRequest
from vmpooler_core.pool_history import MINUTE, Sample

from .dashboard import major
from .endpoint import document
from .services import Services

HOUR_MINUTES = 60
MAX_HOURS = 24
DEFAULT_HOURS = 6
MAX_POINTS = 180  # a chart is a few hundred pixels wide: more points would not be drawn

# How each series of a pool sums up the samples of one bucket.
_SERIES: dict[str, Callable[[Sequence[Sample]], int | None]] = {
    "ready": lambda b: min(s.ready for s in b),
    "pending": lambda b: max(s.pending for s in b),
    "running": lambda b: max(s.running for s in b),
    "size": lambda b: b[-1].size,
    "checkouts": lambda b: sum(s.checkouts for s in b),
    "refused": lambda b: sum(s.refused for s in b),
    "target": lambda b: b[-1].target,
}


def _now_minute(samples: Iterable[list[Sample]]) -> int:
    """This minute: the API's clock, or the newest sample's when Redis's clock is ahead of it."""
    newest = max((found[-1].minute for found in samples if found), default=0)
    return max(int(time.time() // MINUTE), newest)


def _carried(samples: Sequence[Sample], first: int, last: int) -> list[Sample | None]:
    """One slot per minute from `first` to `last`: the minute's sample, or in a gap between two samples the
    one before it; None before the first and after the last."""
    by_minute = {sample.minute: sample for sample in samples if first <= sample.minute <= last}
    if not by_minute:
        return [None] * (last - first + 1)
    end = max(by_minute)
    slots: list[Sample | None] = []
    carry: Sample | None = None
    for minute in range(first, last + 1):
        carry = by_minute.get(minute, carry)
        slots.append(carry if minute <= end else None)
    return slots


async def _last_hour(services: Services) -> tuple[dict[str, list[Sample | None]], int]:
    names = [pool.name for pool in services.config.pools]
    found = await pool_history.read(services.inventory, names, HOUR_MINUTES)
    now = _now_minute(found.values())
    return {name: _carried(found[name], now - HOUR_MINUTES + 1, now) for name in names}, now


async def pool_stats(request: Request, services: Services) -> Response:
    names = [pool.name for pool in services.config.pools]
    counts = await services.inventory.counts(names)
    result: dict[str, Any] = {}
    for pool in services.config.pools:
        result[pool.name] = {"size": pool.size, "ready": counts[pool.name]["ready"]}
    if "history" in request.query_params:
        slots, _ = await _last_hour(services)
        for name, entry in result.items():
            history = [slot.ready for slot in slots[name] if slot is not None]
            entry["history"] = history or [entry["ready"]]
    return document(result)


async def running_stats(request: Request, services: Services) -> Response:
    counts = await services.inventory.counts([pool.name for pool in services.config.pools])
    result: dict[str, dict[str, Any]] = {}
    for pool, states in counts.items():
        family = result.setdefault(major(pool), {"running": 0})
        family["running"] += states["running"]
    if "history" in request.query_params:
        slots, _ = await _last_hour(services)
        families: dict[str, list[list[Sample | None]]] = {}
        for pool, pool_slots in slots.items():
            families.setdefault(major(pool), []).append(pool_slots)
        for name, members in families.items():
            totals = [[slot.running for slot in minute if slot is not None] for minute in zip(*members, strict=True)]
            history = [sum(values) for values in totals if values]
            if history:
                result[name]["history"] = history
    return document(result)


def _hours(request: Request) -> int:
    raw = request.query_params.get("hours")
    if raw is None:
        return DEFAULT_HOURS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
        raise InvalidRequest(f"hours must be a whole number from 1 to {MAX_HOURS}, not {raw[:20]!r}")
    return int(raw)


def _buckets(samples: Sequence[Sample], start: int, step: int, count: int) -> list[list[Sample]]:
    buckets: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        index = (sample.minute - start) // step
        if 0 <= index < count:
            buckets[index].append(sample)
    return buckets


def _series(buckets: Sequence[Sequence[Sample]]) -> dict[str, list[int | None]]:
    series = {name: [summed(bucket) if bucket else None for bucket in buckets] for name, summed in _SERIES.items()}
    if not any(value is not None for value in series["target"]):
        del series["target"]  # no target (yet): the page draws none
    return series


async def history(request: Request, services: Services) -> Response:
    hours = _hours(request)
    names = [pool.name for pool in services.config.pools]
    minutes = hours * HOUR_MINUTES
    found = await pool_history.read(services.inventory, names, minutes)
    times = await pool_history.recent_times(services.inventory, names)
    step = math.ceil(minutes / MAX_POINTS)
    count = math.ceil(minutes / step)
    now = _now_minute(found.values())
    start = now - count * step + 1
    pools: dict[str, Any] = {}
    families: dict[str, list[list[int | None]]] = {}
    for name in names:
        series = _series(_buckets(found[name], start, step, count))
        families.setdefault(major(name), []).append(series["running"])
        pools[name] = {**series, **{phase: None if figures is None else figures.as_json()
                                    for phase, figures in times[name].items()}}
    running: dict[str, list[int | None]] = {}
    for family, members in sorted(families.items()):
        columns = ([value for value in column if value is not None] for column in zip(*members, strict=True))
        running[family] = [sum(values) if values else None for values in columns]
    return document({"hours": hours, "start": start * MINUTE, "step": step * MINUTE, "now": now * MINUTE,
                     "pools": pools, "running": running})
