"""The manager's part in on-demand requests (vmpooler_core/ondemand.py).

Each pass first sweeps the requests (lua/ondemand_sweep.lua, one round trip, which any manager may run):
new requests are taken in as clone tasks, filled ones marked ready, those past `ondemand_request_ttl`
failed. Then it queues the clones of the tasks whose pool it holds the lease of, beside the pools'
refills and in the same `task_limit` slots (cloner.py). A clone is taken from its task only as it is
reserved (lua/ondemand_reserve.lua), so a task another manager takes over after a crash still holds every
clone not yet started; the pool pass delivers the VMs as they pass their ready check (ondemand_vms.py).

Between passes a watcher looks for new requests ten times a second (one ZRANGE each), so a request does
not wait for the next full pass to be taken in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from vmpooler_core import audit, clock

from .cloner import Cloner
from .context import Context, redis_fault
from .pool_worker import PoolWorker

log = logging.getLogger("vmpooler.manager")
WATCH_SECONDS = 0.1  # how often the watcher looks for new requests between passes (one ZRANGE each)


class OnDemand:
    def __init__(self, ctx: Context, cloner: Cloner, workers: Mapping[str, PoolWorker]) -> None:
        self.ctx = ctx
        self.cloner = cloner
        self.workers = workers
        self.store = cloner.requests

    async def run(self) -> int:
        """Sweep the requests and queue the clones of the held pools' tasks; returns the clones queued."""
        try:
            return await self._run()
        except Exception as err:
            if redis_fault(err):
                raise  # the pass's Redis outage
            log.exception("on-demand requests not worked on")  # a bug here must not stop the pools' refills
            return 0

    async def _run(self) -> int:
        now = self.ctx.clock()
        released = audit.entry("completed", clock.stamp(now), manager=self.ctx.owner,
                               detail="its on-demand request failed")
        ttl = self.ctx.config.ondemand.request_ttl
        sweep = await self.store.sweep(now, ttl * 60, released)
        for request in sweep.taken:
            log.info("on-demand request taken in request=%s", request)
        for request in sweep.ready:
            log.info("on-demand request ready request=%s", request)
        for request in sweep.failed:
            log.warning("on-demand request failed request=%s: not filled within ondemand_request_ttl (%d minutes)",
                        request, ttl)
        # Request clones running or waiting for a slot: at most twice the slots, so that a slot a request
        # clone frees is taken by the next one at once, while the refills queued by this pass wait behind at
        # most one round of request clones (a request of a hundred VMs must not starve the pools).
        room = 2 * self.ctx.config.app.task_limit - self.cloner.ordered_running - self.cloner.ordered.total()
        queued = 0
        for task in sweep.tasks:  # the oldest requests first
            worker = self.workers.get(task.pool)
            if worker is None or not self.ctx.leases.holds(task.pool):
                continue  # another manager's pool (or one this manager cannot work)
            for _ in range(min(task.count - self.cloner.ordered[task.pool, task.order], room - queued)):
                self.cloner.start(worker.pool, worker.provider, task.order)
                queued += 1
        return queued

    async def watch(self, stop: asyncio.Event) -> None:
        """Wake the manager for new requests between passes."""
        key = self.ctx.inventory.keys.ondemand_new()
        while not stop.is_set():
            await asyncio.sleep(WATCH_SECONDS)
            try:
                if await self.ctx.inventory.redis.zrange(key, 0, 0):  # (ZRANGE: in the README's least ACL)
                    self.ctx.wake.set()
            except Exception as err:
                if not redis_fault(err):
                    log.exception("on-demand watcher failed")
                # else: the passes report Redis outages
