"""The `task_limit` clone slots, shared by every manager on one Redis.

A clone holds two slots: one of this process's (an asyncio semaphore: it bounds the provider threads and
keeps the queue in order) and one of the pooler's, taken in Redis (lua/clone_slot.lua), so that three
managers clone `task_limit` VMs at once between them, not three times as many. Each manager publishes
how many it holds as a whole number, never an increment, and every write of that number goes through
one lock, so they reach Redis in the order they were made; a manager killed mid-clone stops counting
once its heartbeat is stale (`manager_lease_seconds`), and its slots are free again.

A clone that finds every slot taken waits at the head of this process's queue and asks again when one of
its own clones gives a slot back, and otherwise every `_RETRY` seconds (another manager's slot coming
free is seen that late at most).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .context import Context, redis_fault

log = logging.getLogger("vmpooler.manager")

_RETRY = 0.25  # seconds between asks while every slot is taken by other managers


class CloneSlots:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.limit = ctx.config.app.task_limit
        self._local = asyncio.Semaphore(self.limit)
        self._head = asyncio.Lock()  # the clone that asks Redis for a slot; the others queue behind it
        self._writes = asyncio.Lock()  # every write of `held`, one at a time
        self._freed = asyncio.Event()
        self.held = 0  # slots of the pooler this process holds

    async def take(self) -> None:
        """Wait for a slot of this process, then one of the pooler (FIFO). Raises what Redis raises,
        holding nothing then."""
        await self._local.acquire()
        try:
            async with self._head:
                while not await self._publish(take=True):
                    self._freed.clear()
                    try:
                        await asyncio.wait_for(self._freed.wait(), _RETRY * random.uniform(0.8, 1.2))
                    except TimeoutError:
                        pass
        except BaseException:
            self._local.release()
            raise

    async def give(self) -> None:
        """Give a slot back: at once here; in Redis as soon as it can be told (a failed write is made right
        by the next one, or by the next heartbeat)."""
        self._local.release()
        self.held -= 1
        self._freed.set()
        try:
            await self._publish()
        except Exception as err:
            if not redis_fault(err):
                log.exception("clone slot not given back in redis")
            # else Redis is down: the passes report it, and the next write carries the right number

    async def beat(self) -> None:
        """The manager's heartbeat, with the slots held (lua/presence.lua), in order with the other writes."""
        async with self._writes:
            await self.ctx.presence.beat(time.time(), self.held)

    async def _publish(self, take: bool = False) -> bool:
        """Publish `held`, or with `take` one more if the pooler has a slot free (then True)."""
        async with self._writes:
            held = self.held + 1 if take else self.held
            granted = await self.ctx.inventory.clone_slot(self.ctx.owner, time.time(), self.ctx.presence.stale_after,
                                                          held, self.limit if take else None)
            if granted and take:
                self.held += 1  # not `= held`: a slot given back meanwhile has already been counted down
            return granted
