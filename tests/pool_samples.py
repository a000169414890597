"""Making up a pool's history for the dashboard tests: through the manager's own sampling script (the sets
and tallies made to hold each sample's counts first), or, for a day of 100 pools, written straight into
the lists in the form the script writes (its rollups combined as pool_history.combine does, which
tests/api/test_dashboard_history.py checks against the script)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import redis
from redis import asyncio as aioredis

from vmpooler_core import pool_history
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import SAMPLES_KEPT, Keys
from vmpooler_core.pool_history import ROLLUPS, PoolFigures, Sample, combine

K = Keys()


def take(redis_url: str, pools: Sequence[PoolFigures], minute: int | None) -> float:
    """The manager's sampling call (sample.lua) for `minute`, from a client of its own."""
    async def run() -> float:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await pool_history.take(Inventory(client), pools, minute)
        finally:
            await client.aclose()
    return asyncio.run(run())


def replay(r: redis.Redis, redis_url: str, timeline: Mapping[str, Sequence[Sample]]) -> None:
    """Each pool's samples (by minute, oldest first) taken by the real script: before each minute's call,
    the pools' sets hold the sample's counts and the tally its checkouts and refusals. The sets are left
    empty."""
    minutes = sorted({sample.minute for samples in timeline.values() for sample in samples})
    for minute in minutes:
        now = {pool: next(s for s in samples if s.minute == minute) for pool, samples in timeline.items()
               if any(s.minute == minute for s in samples)}
        pipe = r.pipeline(transaction=False)
        for pool, sample in now.items():
            for state, count in (("ready", sample.ready), ("pending", sample.pending), ("running", sample.running)):
                pipe.delete(K.state(state, pool))
                if count:
                    pipe.sadd(K.state(state, pool), *(f"{pool}-{state}-{i}" for i in range(count)))
            pipe.hset(K.tally(), mapping={f"checkout:{pool}": sample.checkouts, f"refused:{pool}": sample.refused})
        pipe.execute()
        take(redis_url, [PoolFigures(pool, s.size, s.target) for pool, s in now.items()], minute)
    pipe = r.pipeline(transaction=False)
    for pool in timeline:
        for state in ("ready", "pending", "running"):
            pipe.delete(K.state(state, pool))
    pipe.execute()


def write_samples(r: redis.Redis, timeline: Mapping[str, Sequence[Sample]]) -> None:
    """Each pool's samples (oldest first, at most one a minute) and their rollups, straight into its lists."""
    pipe = r.pipeline(transaction=False)
    for pool, samples in timeline.items():
        pipe.rpush(K.samples(pool), *(sample.encode() for sample in samples[-SAMPLES_KEPT:]))
        for span in ROLLUPS:
            spans: dict[int, list[Sample]] = {}
            for sample in samples:
                spans.setdefault(sample.minute - sample.minute % span, []).append(sample)
            done = sorted(spans)[:-1]  # the last span is still under way: the script has not rolled it up
            if done:
                pipe.rpush(K.samples(pool, span), *(combine(spans[start], start).encode() for start in done))
    pipe.execute()
