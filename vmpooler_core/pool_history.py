"""The pools' history without graphite, for the dashboard: one sample a minute of each pool, a day of them
kept in Redis, and each pool's recent clone and boot times.

A sample is one entry of the pool's list (`Keys.samples`), written by lua/sample.lua for the manager that
holds the pool: "<minute> <ready> <pending> <running> <size> <checkouts> <refused>[ <target>]", the minute
being epoch seconds / 60 on Redis's clock; the counts taken at that instant; the size (and the target, when
the pool has one) as the manager runs the pool; and the VMs checked out of the pool and the checkouts
refused while it had none ready since its previous sample (checkout.lua tallies them in `Keys.tally`, in
the script that checks out, so the API does no extra round trip for them).

Beside the minutes the script keeps each pool's ROLLUPS: a day of samples of 2 and of 8 minutes each
(`Keys.samples(pool, minutes)`, the same form, the minute the span's first), each the samples of its span
`combine`d, written once the span is over. Reading a day at 100 pools is then 18,000 samples, not
144,000; the span still under way is combined here from its minutes.

A pool's recent clones and boots (`Keys.recent`) are "<epoch> <seconds>" entries appended by the
manager's record_clone and record_boot: the last RECENT_KEPT of each, so that their median and slowest
cost the same to read whatever the pool's churn.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .inventory import Inventory
from .keys import SAMPLES_KEPT

MINUTE = 60
ROLLUPS = (2, 8)  # minutes of each coarser series kept beside the minutes
# How long a pool's samples outlive its last one (a pool taken out of the configuration, or no manager).
SAMPLES_TTL = SAMPLES_KEPT * MINUTE + 3600
PHASES = ("clone", "boot")


class Sample(NamedTuple):
    """A tuple, not a dataclass: a day of 100 pools is parsed in a request (half the time)."""

    minute: int  # epoch seconds / 60 (of a rollup: its span's first minute)
    ready: int
    pending: int
    running: int
    size: int
    checkouts: int  # VMs checked out of the pool since its previous sample
    refused: int  # checkouts refused since then, while it had no ready VM
    target: int | None = None  # how many ready VMs the pool aims at now, when it has such a target

    def encode(self) -> str:
        """The entry as sample.lua writes it (for tools that make a history up: tests, benchmarks)."""
        return " ".join(str(word) for word in (self if self.target is not None else self[:7]))

    @classmethod
    def parse(cls, raw: str) -> Sample | None:
        """The sample, or None for an entry that is not one (written by a newer or broken writer)."""
        words = raw.split()
        if not 7 <= len(words) <= 8:
            return None
        try:
            return cls(*map(int, words))
        except ValueError:
            return None


def combine(samples: Sequence[Sample], minute: int) -> Sample:
    """The samples of one span (oldest first) as one sample at `minute`: the lowest ready (a pool that ran
    dry shows it), the highest pending and running, the last size and target, the checkouts and refusals
    added up. sample.lua's rollups are made by the same rule."""
    last = samples[-1]
    return Sample(minute, min(s.ready for s in samples), max(s.pending for s in samples),
                  max(s.running for s in samples), last.size, sum(s.checkouts for s in samples),
                  sum(s.refused for s in samples), last.target)


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """What the manager knows of a pool when it samples it."""

    name: str
    size: int
    target: int | None = None


async def take(inventory: Inventory, pools: Sequence[PoolFigures], minute: int | None = None) -> float:
    """One sample of each of `pools` (sample.lua), for `minute` (None: this minute on Redis's clock), in one
    fenced round trip; a pool already sampled for it is left alone. Returns Redis's clock, epoch seconds."""
    words: list[str | int] = []
    for pool in pools:
        words += [pool.name, pool.size, "" if pool.target is None else pool.target]
    reply = await inventory.script("sample", "" if minute is None else minute, SAMPLES_KEPT, SAMPLES_TTL,
                                   " ".join(str(span) for span in ROLLUPS), *words)
    return float(reply[0])


def _parsed(entries: Iterable[str]) -> list[Sample]:
    samples = (Sample.parse(entry) for entry in entries)
    return [sample for sample in samples if sample is not None]


@dataclass(frozen=True, slots=True)
class History:
    samples: dict[str, list[Sample]]  # pool -> its samples, oldest first
    newest: int | None  # the newest minute any pool was sampled, if one was


async def read(inventory: Inventory, pools: Sequence[str], count: int, minutes: int = 1) -> History:
    """Each pool's newest `count` samples of `minutes` (1, or one of ROLLUPS) in one round trip: those of
    the last `count` spans, since there is at most one a span. With a rollup, the span under way, not yet
    rolled up, is the last, combined from its minutes."""
    pipe = inventory.redis.pipeline(transaction=False)
    for pool in pools:
        pipe.lrange(inventory.keys.samples(pool, minutes), -max(1, count), -1)
        if minutes > 1:
            pipe.lrange(inventory.keys.samples(pool), -minutes, -1)
    replies = iter(await pipe.execute())
    found: dict[str, list[Sample]] = {}
    newest: int | None = None
    for pool in pools:
        samples = _parsed(next(replies))
        latest = _parsed(next(replies)) if minutes > 1 else samples
        if latest:
            newest = latest[-1].minute if newest is None else max(newest, latest[-1].minute)
        if minutes > 1:
            done = samples[-1].minute + minutes if samples else None
            under_way = [s for s in latest if done is None or s.minute >= done]
            if under_way:  # one span (a later one would have rolled this one up)
                start = under_way[-1].minute - under_way[-1].minute % minutes
                samples.append(combine([s for s in under_way if s.minute >= start], start))
        found[pool] = samples
    return History(found, newest)


@dataclass(frozen=True, slots=True)
class Times:
    """A pool's recent clone or boot times."""

    median: float
    slowest: float
    count: int
    since: float  # epoch seconds of the oldest counted

    def as_json(self) -> dict[str, float | int]:
        return {"median": round(self.median, 1), "slowest": round(self.slowest, 1), "count": self.count,
                "since": int(self.since)}


def _times(entries: Sequence[str]) -> Times | None:
    pairs: list[tuple[float, float]] = []
    for entry in entries:
        at, _, seconds = entry.partition(" ")
        try:
            pairs.append((float(at), float(seconds)))
        except ValueError:
            continue
    if not pairs:
        return None
    values = [seconds for _, seconds in pairs]
    return Times(statistics.median(values), max(values), len(values), min(at for at, _ in pairs))


async def recent_times(inventory: Inventory, pools: Sequence[str]) -> dict[str, dict[str, Times | None]]:
    """pool -> phase ("clone", "boot") -> the median and slowest of its recent ones (None: none recorded),
    in one round trip."""
    pipe = inventory.redis.pipeline(transaction=False)
    for pool in pools:
        for phase in PHASES:
            pipe.lrange(inventory.keys.recent(phase, pool), 0, -1)
    replies = iter(await pipe.execute())
    return {pool: {phase: _times(next(replies)) for phase in PHASES} for pool in pools}
