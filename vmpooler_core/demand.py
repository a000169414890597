"""Demand-driven pool sizes: what a pool is asked for, and how many ready VMs that calls for.

A pool opts in with `max_size` beside `size` (the floor). The API counts, per pool and per time bucket
(`demand: bucket_seconds`), the VMs checked out, the VMs a refused checkout asked for (a 503: demand the
pool could not meet is demand all the same) and the VMs of on-demand requests, in one ring of `RING`
slots per pool (lua/demand.lua, inside the checkout and submit scripts: no extra round trip). The
manager reads the ring each pass and forecasts (`forecast`):

- the rate: the highest of the rate over the whole window, over the last refill time, and the latter
  carried one refill time ahead along its rise (a morning ramp is met before it peaks);
- what one refill time asks for: a pool cannot get a VM faster than a clone and a boot take (the refill
  time, measured on the pool's own VMs), so it needs at least the VMs wanted during one refill time at
  that rate, plus a margin for chance (`_MARGIN` standard deviations of a Poisson count), and at least
  the most VMs wanted within one refill time anywhere in the window (a CI burst seen once this morning
  is likely to come again: the pool keeps room for it until the window has passed it by);
- within [floor, max_size]. Demand falling away shrinks the target only as the window slides past it.

Everything here is pure: the manager's side is vmpoolerd/manager/demand.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

RING = 256  # slots of a pool's count ring: the window may span at most RING - 1 buckets
_MARGIN = 1.65  # standard deviations of the expected count kept ready beyond it (about 95% of refills)

# What bounds a target (the `limit` of a Target).
FLOOR, DEMAND, MAX_SIZE, PROVIDER_CAP = "floor", "demand", "max_size", "provider_cap"
LIMITS = (FLOOR, DEMAND, MAX_SIZE, PROVIDER_CAP)


@dataclass(frozen=True, slots=True)
class Counts:
    """One bucket of one pool."""

    served: int = 0  # VMs checked out
    refused: int = 0  # VMs asked for by checkouts refused for want of ready VMs
    ondemand: int = 0  # VMs of on-demand requests

    @property
    def wanted(self) -> int:
        return self.served + self.refused + self.ondemand


def bucket_of(epoch: float, width: float) -> int:
    return math.floor(epoch / width)


def read_ring(raw: Mapping[str, str], bucket: int, buckets: int) -> list[Counts]:
    """The counts of the `buckets` buckets up to `bucket` (the current one last), from the ring's hash as
    read (slot -> "<bucket> <served> <refused> <ondemand>"); slots of older buckets count as none."""
    by_bucket: dict[int, Counts] = {}
    for value in raw.values():
        parts = str(value).split()
        if len(parts) == 4 and all(part.lstrip("-").isdigit() for part in parts):
            number, served, refused, ondemand = (int(part) for part in parts)
            by_bucket[number] = Counts(max(served, 0), max(refused, 0), max(ondemand, 0))
    return [by_bucket.get(number, Counts()) for number in range(bucket - buckets + 1, bucket + 1)]


@dataclass(frozen=True, slots=True)
class Forecast:
    wanted: int  # the target the demand alone calls for (before the floor and the caps)
    rate: float  # VMs per minute, as forecast
    peak: int  # the most VMs wanted within one refill time in the window
    refill: float  # seconds from a clone's start to a ready VM


def forecast(history: Sequence[int], width: float, elapsed: float, refill: float) -> Forecast:
    """`history`: VMs wanted per bucket, oldest first, the current (partial) bucket last; `width`: seconds
    per bucket; `elapsed`: seconds of the current bucket gone by; `refill`: seconds to get a VM ready."""
    if not history:
        return Forecast(0, 0.0, 0, refill)
    partial = min(max(elapsed / width, 0.05), 1.0)  # of the current bucket; never a division by ~0

    def rate(counts: Sequence[int]) -> float:  # per second, the last bucket partial
        return sum(counts) / ((len(counts) - 1 + partial) * width) if counts else 0.0

    # The last refill time: its whole buckets and the current one (so a partial bucket never stands alone).
    span = max(1, math.ceil(refill / width))
    short, whole = rate(history[-(span + 1):]), rate(history)
    # A rise: the rate went up over each of the last three refill times (a ramp, not a single burst).
    before = history[:-(span + 1)]
    earlier = [sum(before[len(before) - (k + 1) * span:len(before) - k * span]) / (span * width) for k in (0, 1)]
    rising = 0.0
    if len(before) >= 2 * span and earlier[1] < earlier[0] < short:
        rising = (short - earlier[1]) / ((2 * span + partial) * width)  # per second, per second
    ahead = short + rising * refill
    per_second = max(whole, short, ahead)
    expected = per_second * refill
    reach = max(1, math.ceil(refill / width))
    peak = max(sum(history[start:start + reach]) for start in range(len(history)))
    wanted = max(math.ceil(expected + _MARGIN * math.sqrt(expected) - 1e-9) if expected > 0 else 0, peak)
    return Forecast(wanted, per_second * 60, peak, refill)


@dataclass(frozen=True, slots=True)
class Target:
    """A pool's size as the manager keeps it this pass, and why: the record it writes for /status,
    Prometheus and `vmpooler pools` (`<prefix>__sizing`, pool -> JSON)."""

    size: int
    limit: str  # one of LIMITS: what bounds it
    floor: int
    max_size: int
    rate: float  # VMs per minute, as forecast
    peak: int
    refill: float  # seconds
    at: float = 0.0  # epoch seconds it was worked out

    @property
    def why(self) -> str:
        demand = (f"demand {self.rate:.1f} VMs/min, up to {self.peak} within one refill of "
                  f"{self.refill:.0f} s")
        bound = {FLOOR: f"at its floor (size {self.floor})", DEMAND: "sized to demand",
                 MAX_SIZE: f"at max_size {self.max_size}",
                 PROVIDER_CAP: "held back by its provider's max_vms"}.get(self.limit, self.limit)
        return f"{bound}: {demand}"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rate": round(self.rate, 3), "refill": round(self.refill, 1)},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> Target | None:
        """None when `raw` is not a record (absent, or written by something else)."""
        try:
            data: Any = json.loads(raw or "null")
            if not isinstance(data, dict) or str(data.get("limit")) not in LIMITS:
                return None
            return cls(int(data["size"]), str(data["limit"]), int(data["floor"]), int(data["max_size"]),
                       float(data["rate"]), int(data["peak"]), float(data["refill"]), float(data.get("at", 0)))
        except (ValueError, TypeError, KeyError):
            return None

    def document(self) -> dict[str, Any]:
        """The pool's `target` in /status."""
        return {"size": self.size, "why": self.why, "limit": self.limit, "floor": self.floor,
                "max_size": self.max_size, "demand_per_minute": round(self.rate, 2), "peak": self.peak,
                "refill_seconds": round(self.refill, 1)}


def bounded(wanted: Forecast, floor: int, max_size: int, at: float) -> Target:
    """The forecast within [floor, max_size]. A floor above max_size (a size set through the API) wins."""
    ceiling = max(max_size, floor)
    if wanted.wanted <= floor:
        size, limit = floor, FLOOR
    elif wanted.wanted >= ceiling:
        size, limit = ceiling, MAX_SIZE
    else:
        size, limit = wanted.wanted, DEMAND
    return Target(size, limit, floor, max_size, wanted.rate, wanted.peak, wanted.refill, at)


def refill_time(samples: Sequence[float]) -> float | None:
    """The refill time from the clone-to-ready times of a pool's VMs: their median (a VM that took the
    whole timeout must not make the pool twice the size); None without any."""
    ordered = sorted(value for value in samples if value >= 0)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
