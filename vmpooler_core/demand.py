"""Demand-driven pool sizes: what a pool is asked for, and how many ready VMs that calls for.

A pool opts in with `max_size` beside `size` (the floor). The API counts, per pool and per time bucket
(`demand: bucket_seconds`), the VMs checked out, the VMs a refused checkout asked for (a 503: demand the
pool could not meet is demand all the same) and the VMs of on-demand requests, in one ring of `RING`
slots per pool (lua/demand.lua, inside the checkout and submit scripts: no extra round trip). The
manager reads the ring each pass and forecasts (`forecast`):

- the rate: the highest of the rate over the whole window, over the last refill time, and the latter
  carried one refill time ahead along its rise (a morning ramp is met before it peaks);
- what one refill time asks for: a pool cannot get a VM faster than a clone and a boot take (the refill
  time, measured on the pool's last VMs made ready: `RefillSamples`), so it needs at least the VMs
  wanted during one refill time at that rate, plus a margin for chance (`_MARGIN` standard deviations of
  a Poisson count), and at least the most VMs wanted within one refill time anywhere in the window,
  those left waiting by refused checkouts included (a CI burst seen this morning is likely to come
  again: the pool keeps room for it until the window, three hours by default, has passed it by);
- and at least what the pool usually wants at this hour and one refill time ahead: each hour the manager
  records the most VMs wanted within one refill time in it (a profile of `PROFILE_DAYS` days, beside the
  ring), and the pool is grown to the lower of that hour's figure yesterday and a week ago (yesterday's
  alone until there is a week of them). So a morning rush, or a nightly batch, is met before it starts
  from the second day on; a Monday follows Friday's profile only if last Monday had it too;
- within [floor, max_size]. Demand falling away shrinks the target only as the window slides past it.

Everything here is pure: the manager's side is vmpoolerd/manager/demand.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RING = 256  # slots of a pool's count ring: the window may span at most RING - 1 buckets
PROFILE_DAYS = 8  # days of hourly figures kept: yesterday's and the same day's last week
_HOURS = 24
REFILL_SAMPLES = 32  # VMs whose clone-to-ready times make a pool's refill time (RefillSamples)
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


def bucket_of(epoch: float, width: float) -> int:
    return math.floor(epoch / width)


def read_ring(raw: Mapping[str, str], bucket: int, buckets: int) -> list[Counts]:
    """The counts of the `buckets` buckets up to `bucket` (the current one last), from the ring's hash as
    read (slot -> "<bucket> <served> <refused> <ondemand>"); slots of older buckets count as none."""
    by_bucket: dict[int, Counts] = {}
    for slot, value in raw.items():
        parts = str(value).split()
        if slot.isdigit() and len(parts) == 4 and all(part.lstrip("-").isdigit() for part in parts):
            number, served, refused, ondemand = (int(part) for part in parts)
            by_bucket[number] = Counts(max(served, 0), max(refused, 0), max(ondemand, 0))
    return [by_bucket.get(number, Counts()) for number in range(bucket - buckets + 1, bucket + 1)]


def hour_of(epoch: float, day_seconds: float) -> int:
    """The number of the profile's hour (a 24th of `day_seconds`) that `epoch` falls in."""
    return math.floor(epoch / (day_seconds / _HOURS))


def profile_field(hour: int) -> str:
    """The field of the ring's hash that holds the figure of `hour` (beside the ring's numbered slots)."""
    return f"h{hour % (PROFILE_DAYS * _HOURS)}"


def read_profile(raw: Mapping[str, str]) -> dict[int, int]:
    """Hour number -> the most VMs wanted within one refill time in it, from the ring's hash as read
    (`profile_field` -> "<hour> <VMs>")."""
    profile: dict[int, int] = {}
    for slot, value in raw.items():
        parts = str(value).split()
        if slot.startswith("h") and len(parts) == 2 and all(part.isdigit() for part in parts):
            profile[int(parts[0])] = int(parts[1])
    return profile


def usual(profile: Mapping[int, int], hours: Iterable[int]) -> int:
    """What the pool usually wants at these hours: for each, the lower of its figure yesterday and the same
    day last week (yesterday's alone while last week's is unknown; none without yesterday's); the most."""
    found = [0]
    for hour in hours:
        yesterday, last_week = profile.get(hour - _HOURS), profile.get(hour - 7 * _HOURS)
        if yesterday is not None:
            found.append(yesterday if last_week is None else min(yesterday, last_week))
    return max(found)


def peaks(history: Sequence[Counts], span: int) -> list[int]:
    """The VMs wanted within `span` buckets from each bucket on: those handed out (checked out, or asked
    for on demand) in them, plus those refused in the last of them. Refused checkouts are retried by their
    clients, each retry counted again, and a client served after a wait is counted as served too: the
    refusals of the last bucket are the clients left waiting then."""
    asked = [counts.served + counts.ondemand for counts in history]
    return [sum(asked[start:start + span]) + history[min(start + span, len(history)) - 1].refused
            for start in range(len(history))]


@dataclass(frozen=True, slots=True)
class Forecast:
    wanted: int  # the target the demand alone calls for (before the floor and the caps)
    rate: float  # VMs per minute, as forecast
    peak: int  # the most VMs wanted within one refill time in the window
    refill: float  # seconds from a clone's start to a ready VM
    usual: int = 0  # the most VMs usually wanted within one refill time at this hour and one refill ahead


def forecast(history: Sequence[Counts], width: float, elapsed: float, refill: float, usual: int = 0) -> Forecast:
    """`history`: the counts per bucket, oldest first, the current (partial) bucket last; `width`: seconds
    per bucket; `elapsed`: seconds of the current bucket gone by; `refill`: seconds to get a VM ready;
    `usual`: what the pool usually wants now (see `usual`). The rate is the VMs handed out (`peaks`)."""
    if not history:
        return Forecast(usual, 0.0, 0, refill, usual)
    asked = [counts.served + counts.ondemand for counts in history]
    partial = min(max(elapsed / width, 0.05), 1.0)  # of the current bucket; never a division by ~0

    def rate(counts: Sequence[int]) -> float:  # per second, the last bucket partial
        return sum(counts) / ((len(counts) - 1 + partial) * width) if counts else 0.0

    # The last refill time: its whole buckets and the current one (so a partial bucket never stands alone).
    span = max(1, math.ceil(refill / width))
    short, whole = rate(asked[-(span + 1):]), rate(asked)
    # A rise: the rate went up over each of the last three refill times (a ramp, not a single burst).
    before = asked[:-(span + 1)]
    earlier = [sum(before[len(before) - (k + 1) * span:len(before) - k * span]) / (span * width) for k in (0, 1)]
    rising = 0.0
    if len(before) >= 2 * span and earlier[1] < earlier[0] < short:
        rising = (short - earlier[1]) / ((2 * span + partial) * width)  # per second, per second
    per_second = max(whole, short, short + rising * refill)
    expected = per_second * refill
    peak = max(peaks(history, span))
    wanted = max(math.ceil(expected + _MARGIN * math.sqrt(expected) - 1e-9) if expected > 0 else 0, peak, usual)
    return Forecast(wanted, per_second * 60, peak, refill, usual)


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
    usual: int = 0  # the most VMs usually wanted within one refill time at this hour (yesterday, last week)

    @property
    def why(self) -> str:
        demand = (f"demand {self.rate:.1f} VMs/min, up to {self.peak} within one refill of "
                  f"{self.refill:.0f} s" + (f", usually {self.usual} at this hour" if self.usual else ""))
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
                       float(data["rate"]), int(data["peak"]), float(data["refill"]), float(data.get("at", 0)),
                       int(data.get("usual", 0)))
        except (ValueError, TypeError, KeyError):
            return None

    def document(self) -> dict[str, Any]:
        """The pool's `target` in /status."""
        return {"size": self.size, "why": self.why, "limit": self.limit, "floor": self.floor,
                "max_size": self.max_size, "demand_per_minute": round(self.rate, 2), "peak": self.peak,
                "usual": self.usual, "refill_seconds": round(self.refill, 1)}


def bounded(wanted: Forecast, floor: int, max_size: int, at: float) -> Target:
    """The forecast within [floor, max_size]. A floor above max_size (a size set through the API) wins."""
    ceiling = max(max_size, floor)
    if wanted.wanted <= floor:
        size, limit = floor, FLOOR
    elif wanted.wanted >= ceiling:
        size, limit = ceiling, MAX_SIZE
    else:
        size, limit = wanted.wanted, DEMAND
    return Target(size, limit, floor, max_size, wanted.rate, wanted.peak, wanted.refill, at, wanted.usual)


def refill_time(samples: Sequence[float]) -> float | None:
    """The refill time from the clone-to-ready times of a pool's VMs: their mean without the fifth at
    each end (a VM that took the whole timeout must not make the pool twice the size; the stamps are whole
    seconds, and the mean of many is closer than any one). None without any."""
    ordered = sorted(value for value in samples if value >= 0)
    if not ordered:
        return None
    cut = len(ordered) // 5
    kept = ordered[cut:len(ordered) - cut]
    return sum(kept) / len(kept)


@dataclass(slots=True)
class RefillSamples:
    """The clone-to-ready times of a pool's last `REFILL_SAMPLES` VMs made ready, each VM counted once.

    Measured on the ready VMs of the moment alone, a pool at a floor of one had its refill time from one VM
    (and from the same one for hours, however long later clones took): one slow or quick clone, or the
    whole-second stamps of a quick one, set the size of the pool's next rush."""

    kept: dict[str, float] = field(default_factory=dict)  # host -> seconds, oldest first

    def add(self, host: str, seconds: float) -> None:
        if host in self.kept or seconds < 0:
            return
        self.kept[host] = seconds
        while len(self.kept) > REFILL_SAMPLES:
            del self.kept[next(iter(self.kept))]

    def time(self) -> float | None:
        return refill_time(list(self.kept.values()))
