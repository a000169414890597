"""The `/summary` document: clone and boot times and tag counts over a range of days.

Built from the daily hashes the manager and the API write (`vmpooler__boot__<date>`,
`vmpooler__clone__<date>`, `vmpooler__tag__<date>`), all days read in one pipelined round trip.
Unlike the original, the whole-range min/max/average are computed (its merge looked them up under
the wrong keys and left them out), and the range is bounded so one request cannot read years of data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from . import clock
from .errors import InvalidRequest, NotFound
from .inventory import Inventory

ROUTES = ("boot", "clone", "tag")
TASK_KEYS = ("duration", "count")
MAX_DAYS = 366
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse(text: str) -> date:
    if not _DATE_RE.fullmatch(text):
        raise InvalidRequest(f"Invalid date format '{text[:40]}', must match YYYY-MM-DD.")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"Invalid date '{text}'.") from None


def date_range(start: str | None, end: str | None, today: str | None = None) -> tuple[date, date]:
    """`from`/`to` query values (default: today) -> validated dates."""
    now = date.fromisoformat(today or clock.today())
    first = _parse(start) if start is not None else now  # present but empty is a bad date, not today
    last = _parse(end) if end is not None else now
    if last < first:
        raise InvalidRequest("Date range is invalid, 'to' cannot come before 'from'.")
    if first > now:
        raise InvalidRequest("Date range is invalid, 'from' must be in the past.")
    if (last - first).days >= MAX_DAYS:
        raise InvalidRequest(f"Date range is invalid, at most {MAX_DAYS} days at a time.")
    return first, last


def _durations(values: list[float]) -> dict[str, Any]:
    total = sum(values)
    return {"average": round(total / len(values), 2) if values else 0,
            "min": round(min(values), 2) if values else 0,
            "max": round(max(values), 2) if values else 0,
            "total": round(total, 2)}


def task_metrics(times: Iterable[tuple[str, float]], only: str | None = None) -> dict[str, Any]:
    """(pool, seconds) pairs -> {"duration": {..., "pool": {...}}, "count": {"total", "pool": {...}}}."""
    by_pool: dict[str, list[float]] = {}
    every: list[float] = []
    for pool, seconds in times:
        by_pool.setdefault(pool, []).append(seconds)
        every.append(seconds)
    duration = _durations(every)
    duration["pool"] = {pool: _durations(values) for pool, values in by_pool.items()}
    count = {"total": len(every), "pool": {pool: {"total": len(values)} for pool, values in by_pool.items()}}
    doc = {"duration": duration, "count": count}
    return {only: doc[only]} if only else doc


def _times(raw: Mapping[str, str]) -> list[tuple[str, float]]:
    """Fields are `<pool>:<host>` (boot) or `<template>:<host>` (clone); unreadable values are skipped."""
    found: list[tuple[str, float]] = []
    for field, value in raw.items():
        pool = field.split(":", 1)[0] if ":" in field else "unknown"
        try:
            found.append((pool, float(value)))
        except ValueError:
            continue
    return found


def tag_metrics(raw: Mapping[str, str], only: str | None = None) -> dict[str, dict[str, int]]:
    """Fields `<host>:<tag>` -> {tag: {value: count, ..., "total": count}}."""
    tags: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        tag = field.split(":", 1)[1] if ":" in field else "unknown"
        if only and tag != only:
            continue
        counts = tags.setdefault(tag, {})
        counts[value] = counts.get(value, 0) + 1
        counts["total"] = counts.get("total", 0) + 1
    return tags


def _merge_tags(days: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {}
    for day in days:
        for tag, counts in day.items():
            into = merged.setdefault(tag, {})
            for value, n in counts.items():
                into[value] = into.get(value, 0) + n
    return merged


async def summary(inventory: Inventory, first: date, last: date, route: str | None = None,
                  key: str | None = None) -> dict[str, Any]:
    """The whole document, or with `route` (boot, clone, tag) only that section, optionally
    narrowed to `key` (duration/count for boot and clone, a tag name for tag)."""
    if route is not None and route not in ROUTES:
        raise NotFound(f"no summary {route[:40]!r} (known: {', '.join(ROUTES)})")
    if key is not None and route in ("boot", "clone") and key not in TASK_KEYS:
        raise NotFound(f"no {route} summary {key[:40]!r} (known: {', '.join(TASK_KEYS)})")
    sections = (route,) if route else ROUTES
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    keys = {"boot": inventory.keys.boot_stats, "clone": inventory.keys.clone_stats,
            "tag": inventory.keys.tag_stats}
    pipe = inventory.redis.pipeline(transaction=False)
    for day in days:
        for section in sections:
            pipe.hgetall(keys[section](day))
    raw = iter(await pipe.execute())
    daily: list[dict[str, Any]] = []
    collected: dict[str, list[Any]] = {section: [] for section in sections}
    for day in days:
        entry: dict[str, Any] = {"date": day}
        for section in sections:
            values = next(raw)
            if section == "tag":
                entry["tag"] = tag_metrics(values, key)
                collected["tag"].append(entry["tag"])
            else:
                times = _times(values)
                entry[section] = task_metrics(times, key)
                collected[section].extend(times)
        daily.append(entry)
    doc: dict[str, Any] = {}
    for section in sections:
        if section == "tag":
            doc["tag"] = _merge_tags(collected["tag"])
        else:
            doc[section] = task_metrics(collected[section], key)
    doc["daily"] = daily
    return doc
