"""Which manager works which pool: per-pool leases in Redis, and each manager's heartbeat.

A lease is `vmpooler__lease__<pool>` = manager id, set with an expiry (SET NX PX) and renewed by
compare-and-set (lua/lease.lua), so a manager only ever extends its own. A manager that dies stops
renewing, and within `manager_lease_seconds` another one's next pass takes the pool. Locally a lease
counts as held only until a little before it can have expired, so a manager cut off from Redis stops
working its pools before anyone else may start.

The heartbeat (lua/presence.lua) tells the managers which of them are alive: a pending VM recorded by a
live manager may still be cloning there; one recorded by a dead manager is not.

A manager waiting for a pool whose holder has stopped renewing its lease (it died, or lost Redis) says so
once, with the time left, rather than leave the pool's standstill unexplained until the lease runs out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from vmpooler_core.inventory import Inventory

log = logging.getLogger("vmpooler.manager")

# Stop trusting a lease this share of its length after the renewal was sent.
_SAFETY = 0.8
# A live holder renews every third of the lease, so its lease never has less than two thirds left; with
# less than this share left, it has missed a renewal. (The managers of one Redis share their config.)
_UNRENEWED = 0.5


class Leases:
    def __init__(self, inventory: Inventory, owner: str, seconds: float) -> None:
        self.inventory = inventory
        self.owner = owner
        self.seconds = seconds
        self._until: dict[str, float] = {}  # pool -> monotonic time the lease stops counting as ours
        self._unrenewed: dict[str, str] = {}  # pool -> the holder whose missed renewal was logged

    def holds(self, pool: str) -> bool:
        return time.monotonic() < self._until.get(pool, 0.0)

    @property
    def pools(self) -> set[str]:
        return {pool for pool in self._until if self.holds(pool)}

    async def acquire(self, pools: Iterable[str]) -> set[str]:
        """Take the free leases of `pools` and renew ours; returns the pools held."""
        return await self._update(list(pools), "acquire")

    async def renew(self) -> set[str]:
        return await self._update(sorted(self._until), "renew")

    async def release(self, pools: Iterable[str]) -> None:
        names = list(pools)
        self._until.clear()
        await self.inventory.leases(self.owner, names, "release", self.seconds)

    async def watch(self, pools: Iterable[str]) -> None:
        """For pools another manager holds: log once per pool and holder when that holder has stopped
        renewing the lease, and how long until this manager may take the pool over."""
        names = sorted(pools)
        for pool in set(self._unrenewed) - set(names):
            del self._unrenewed[pool]
        if not names:
            return
        keys = self.inventory.keys
        pipe = self.inventory.redis.pipeline(transaction=False)
        for pool in names:
            pipe.get(keys.lease(pool))
            pipe.pttl(keys.lease(pool))
        found = await pipe.execute()
        for pool, holder, left in zip(names, found[0::2], found[1::2], strict=True):
            if not holder or left < 0 or left >= self.seconds * 1000 * _UNRENEWED:
                if self._unrenewed.get(pool) != holder:
                    self._unrenewed.pop(pool, None)
                continue
            if self._unrenewed.get(pool) != holder:
                self._unrenewed[pool] = holder
                log.warning("waiting for a lease pool=%s holder=%s: it has not been renewed for %.0fs (that "
                            "manager stopped or lost Redis); taken over in %.0fs", pool, holder,
                            self.seconds - left / 1000, left / 1000)

    async def _update(self, pools: list[str], mode: str) -> set[str]:
        sent = time.monotonic()
        held = await self.inventory.leases(self.owner, pools, mode, self.seconds)
        for pool in pools:
            if pool in held:
                if pool not in self._until:
                    log.info("lease taken pool=%s manager=%s", pool, self.owner)
                self._until[pool] = sent + self.seconds * _SAFETY
            elif self._until.pop(pool, None) is not None:
                log.warning("lease lost pool=%s manager=%s", pool, self.owner)
        return held


class Presence:
    def __init__(self, inventory: Inventory, owner: str, stale_after: float) -> None:
        self.inventory = inventory
        self.owner = owner
        self.stale_after = stale_after
        self.live: set[str] = {owner}

    async def beat(self, now: float, clones: int | None = None) -> set[str]:
        self.live = await self.inventory.presence(self.owner, now, self.stale_after, clones) | {self.owner}
        return self.live

    async def leave(self, now: float) -> None:
        await self.inventory.presence(self.owner, now, self.stale_after, leave=True)
