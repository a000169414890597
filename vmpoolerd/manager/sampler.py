"""The dashboard's history: once a minute, on Redis's clock, one sample of every pool this manager holds
(vmpooler_core/pool_history.py), all of them in one fenced script call.

It runs beside the passes, not in them, so that a slow pass (a provider taking minutes to list a folder)
leaves no gap in the history: a pool whose provider fails is the one whose curve matters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from vmpooler_core import pool_history
from vmpooler_core.pool_history import MINUTE, PoolFigures

from .context import Context, redis_fault
from .pool_worker import PoolWorker

log = logging.getLogger("vmpooler.manager")
_AFTER_THE_MINUTE = 0.5  # seconds into Redis's minute the next sample is taken
_RETRY = 5.0  # seconds before trying again after a failed sample (Redis down: the passes report it)


def no_targets() -> Mapping[str, int]:
    return {}


class Sampler:
    """`targets`: each pool's target size, for the pools that have one (demand-driven sizes); none by
    default, and the samples then have no target."""

    def __init__(self, ctx: Context, workers: Mapping[str, PoolWorker],
                 targets: Callable[[], Mapping[str, int]] = no_targets) -> None:
        self.ctx = ctx
        self.workers = workers
        self.targets = targets

    async def once(self, minute: int | None = None) -> float:
        """Sample the pools held now (for `minute`; None: Redis's current one). Returns the seconds until
        the next sample is due."""
        targets = self.targets()
        held = [PoolFigures(name, self.workers[name].pool.size, targets.get(name))
                for name in sorted(self.ctx.leases.pools) if name in self.workers]
        now = await pool_history.take(self.ctx.inventory, held, minute)
        return MINUTE - now % MINUTE + _AFTER_THE_MINUTE

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a first sample as soon as the manager holds a pool, then one each minute."""
        while not stop.is_set():
            if not self.ctx.leases.pools:
                delay = 1.0  # nothing held yet (the first pass takes the leases): no sample to write
            else:
                try:
                    delay = await self.once()
                except Exception as err:
                    if not redis_fault(err):
                        log.exception("pools not sampled")
                    delay = _RETRY
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
