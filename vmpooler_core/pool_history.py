"""The pools' history without graphite, for the dashboard: one sample a minute of each pool, a day of them
kept in Redis, and each pool's recent clone and boot times.

A sample is one entry of the pool's list (`Keys.samples`), written by lua/sample.lua for the manager that
holds the pool: "<minute> <ready> <pending> <running> <size> <checkouts> <refused>[ <target>]", the minute
being epoch seconds / 60 on Redis's clock; the counts taken at that instant; the size (and the target, when
the pool has one) as the manager runs the pool; and the VMs checked out of the pool and the checkouts
refused while it had none ready since its previous sample (checkout.lua tallies them in `Keys.tally`, in
the script that checks out, so the API does no extra round trip for them). About 30 bytes a sample: a
day of 100 pools is a few MB of Redis (bench/sampling.py measures it).

A pool's recent clones and boots (`Keys.recent`) are "<epoch> <seconds>" entries appended by the
manager's record_clone and record_boot: the last RECENT_KEPT of each, so that their median and slowest
cost the same to read whatever the pool's churn.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .inventory import Inventory
from .keys import SAMPLES_KEPT

MINUTE = 60
# How long a pool's samples outlive its last one (a pool taken out of the configuration, or no manager).
SAMPLES_TTL = SAMPLES_KEPT * MINUTE + 3600
PHASES = ("clone", "boot")


@dataclass(frozen=True, slots=True)
class Sample:
    minute: int  # epoch seconds / 60
    ready: int
    pending: int
    running: int
    size: int
    checkouts: int  # VMs checked out of the pool since its previous sample
    refused: int  # checkouts refused since then, while it had no ready VM
    target: int | None = None  # how many ready VMs the pool aims at now, when it has such a target

    def encode(self) -> str:
        """The entry as sample.lua writes it (for tools that make a history up: tests, benchmarks)."""
        words = [self.minute, self.ready, self.pending, self.running, self.size, self.checkouts, self.refused]
        return " ".join(str(word) for word in (*words, *(() if self.target is None else (self.target,))))

    @classmethod
    def parse(cls, raw: str) -> Sample | None:
        """The sample, or None for an entry that is not one (written by a newer or broken writer)."""
        try:
            numbers = [int(word) for word in raw.split()]
        except ValueError:
            return None
        if len(numbers) not in (7, 8):
            return None
        minute, ready, pending, running, size, checkouts, refused = numbers[:7]
        return cls(minute, ready, pending, running, size, checkouts, refused, numbers[7] if len(numbers) == 8 else None)


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
    reply = await inventory.script("sample", "" if minute is None else minute, SAMPLES_KEPT, SAMPLES_TTL, *words)
    return float(reply[0])


async def read(inventory: Inventory, pools: Sequence[str], minutes: int) -> dict[str, list[Sample]]:
    """Each pool's samples of the last `minutes` minutes (those of the `minutes` newest entries: there is at
    most one a minute), oldest first, in one round trip; `now` is not needed to pick them, only to place
    them."""
    pipe = inventory.redis.pipeline(transaction=False)
    for pool in pools:
        pipe.lrange(inventory.keys.samples(pool), -max(1, minutes), -1)
    found: dict[str, list[Sample]] = {}
    for pool, entries in zip(pools, await pipe.execute(), strict=True):
        samples = (Sample.parse(entry) for entry in entries)
        found[pool] = [sample for sample in samples if sample is not None]
    return found


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
