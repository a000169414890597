"""The dashboard's JSON, filled from the pools' one-minute samples (vmpooler_core/pool_history.py), so that
it needs no graphite:

- `/dashboard/stats/vmpooler/pool[?history=1]` and `/dashboard/stats/vmpooler/running[?history=1]` in the
  original's shapes. The original read `history` from graphite (the last hour of its `ready.<pool>` and
  `running.<pool>` gauges, each empty point filled with the value before it); here it is the last hour of
  samples, one value a minute, oldest first, a gap between two samples filled the same way. A pool with no
  sample in the last hour has the original's answer without graphite, `[<ready now>]`; a family with none,
  no `history`, as there.
- `/dashboard/stats/vmpooler/history?hours=N` (1 to 24, default 6), what the page draws: per pool, its
  series over the last N hours in at most MAX_POINTS spans of whole minutes (pool_history.combine: a
  span's lowest ready, so that a pool that ran dry shows it; its highest pending and running; its last
  size and target; its checkouts and refusals added up; null where no sample was taken), read from the
  coarsest rollup that fits, its recent clone and boot times (median and slowest), and the running VMs of
  each family over the same spans. A document is made at most every FRESH_SECONDS for each window, and
  served to every page that asks meanwhile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import pool_history, pool_settings
from vmpooler_core.errors import InvalidRequest
from vmpooler_core.pool_history import MINUTE, ROLLUPS, Sample, combine

from .dashboard import major
from .endpoint import document
from .services import Services

HOUR_MINUTES = 60
MAX_HOURS = 24
DEFAULT_HOURS = 6
MAX_POINTS = 180  # a chart is a few hundred pixels wide: more points would not be drawn
FRESH_SECONDS = 15.0
SERIES = Sample._fields[1:]  # ready, pending, running, size, checkouts, refused, target


def _now_minute(newest: int | None) -> int:
    """This minute: the API's clock, or the newest sample's when Redis's clock is ahead of it."""
    return max(int(time.time() // MINUTE), newest or 0)


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


async def _last_hour(services: Services) -> dict[str, list[Sample | None]]:
    names = [pool.name for pool in services.config.pools]
    found = await pool_history.read(services.inventory, names, HOUR_MINUTES)
    now = _now_minute(found.newest)
    return {name: _carried(found.samples[name], now - HOUR_MINUTES + 1, now) for name in names}


async def pool_stats(request: Request, services: Services) -> Response:
    names = [pool.name for pool in services.config.pools]
    counts = await services.inventory.counts(names)
    sizes = await pool_settings.sizes(services.inventory, services.config.pools)  # the API's, if set
    result: dict[str, Any] = {}
    for pool in services.config.pools:
        result[pool.name] = {"size": sizes[pool.name], "ready": counts[pool.name]["ready"]}
    if "history" in request.query_params:
        slots = await _last_hour(services)
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
        families: dict[str, list[list[Sample | None]]] = {}
        for pool, pool_slots in (await _last_hour(services)).items():
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


def _series(samples: Sequence[Sample], start: int, step: int, count: int) -> dict[str, list[int | None]]:
    """The pool's series over `count` spans of `step` minutes from minute `start` (null: no sample)."""
    spans: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        index = (sample.minute - start) // step
        if 0 <= index < count:
            spans[index].append(sample)
    # (A span of one sample, as each is when read from a rollup of the span's length, is that sample.)
    combined = [(span[0] if len(span) == 1 else combine(span, span[0].minute)) if span else None for span in spans]
    series = {name: [None if s is None else s[field] for s in combined] for field, name in enumerate(SERIES, 1)}
    if not any(value is not None for value in series["target"]):
        del series["target"]  # no target (yet): the page draws none
    return series


async def history(request: Request, services: Services) -> Response:
    hours = _hours(request)
    # One document a FRESH_SECONDS per window, whoever asks: at 100 pools one costs some 40 ms of the
    # event loop (bench/sampling.py), and every open page asks once a minute.
    served: dict[int, tuple[float, bytes]] = getattr(request.app.state, "dashboard_history", {})
    request.app.state.dashboard_history = served
    made_at, body = served.get(hours, (float("-inf"), b""))
    if time.monotonic() - made_at > FRESH_SECONDS:
        body = bytes(document(await _history(services, hours)).body)
        served[hours] = (time.monotonic(), body)
    return Response(body, media_type="application/json")


async def _history(services: Services, hours: int) -> dict[str, Any]:
    names = [pool.name for pool in services.config.pools]
    step = math.ceil(hours * HOUR_MINUTES / MAX_POINTS)  # minutes a point
    count = math.ceil(hours * HOUR_MINUTES / step)
    rollup = max(span for span in (1, *ROLLUPS) if step % span == 0)  # spans that fit whole in a point's
    found = await pool_history.read(services.inventory, names, count * step // rollup, rollup)
    times = await pool_history.recent_times(services.inventory, names)
    now = _now_minute(found.newest)
    start = (now // step - count + 1) * step  # points on whole multiples of `step`, as the rollups are
    pools: dict[str, Any] = {}
    families: dict[str, list[list[int | None]]] = {}
    for name in names:
        series = _series(found.samples[name], start, step, count)
        families.setdefault(major(name), []).append(series["running"])
        pools[name] = {**series, **{phase: None if figures is None else figures.as_json()
                                    for phase, figures in times[name].items()}}
    running: dict[str, list[int | None]] = {}
    for family, members in sorted(families.items()):
        columns = ([value for value in column if value is not None] for column in zip(*members, strict=True))
        running[family] = [sum(values) if values else None for values in columns]
    return {"hours": hours, "start": start * MINUTE, "step": step * MINUTE, "now": now * MINUTE, "pools": pools,
            "running": running}
