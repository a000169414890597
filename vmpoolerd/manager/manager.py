"""The replenisher: keeps every pool filled with ready VMs, and Redis and the providers in agreement.

    manager = Manager(config, redis_client, providers, metrics)
    await manager.run_once()          # one pass over every pool (tests, tools)
    await manager.run_forever(stop)   # passes every `manager_loop_seconds` until `stop` is set

A pass takes (or renews) the lease of each pool, so that several managers on one Redis share the pools
and never work one at the same time; sets the size of the pools sized to demand for the pass
(demand.py); works each held pool (pool_worker.py); then starts the clones the
pools are short of, handed out round-robin across pools so that one big pool cannot starve the others
of the `task_limit` clone slots; and takes the disk and snapshot tasks queued by the API. Beside the
passes, once a minute, it samples the pools it holds for the dashboard's history (sampler.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from redis import asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from vmpooler_core import redis_faults
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import Metrics
from vmpooler_core.provider import Provider, ProviderError, ProviderUnavailable
from vmpooler_core.redis_client import connect

from . import listing, ownership
from .backoff import Outage
from .cloner import Cloner
from .context import Context, redis_fault
from .demand import DemandSizing
from .destroyer import Destroyer
from .health_report import HealthReport
from .lease import Leases, Presence
from .ondemand import OnDemand
from .pool_settings import PoolSettings
from .pool_worker import PoolWorker
from .runner import ProviderRunner
from .sampler import Sampler
from .tasks import TaskQueues

log = logging.getLogger("vmpooler.manager")
# Pools whose pass runs at once. Their inventories arrive together (listing.py), and each pass holds a
# Redis connection or two at a time: a hundred at once would take every connection of the client (64),
# beside the clones'.
_CHECKS = 16
_WAKE_GAP = 0.2  # seconds: a finished clone brings its pool's next pass forward, at most this often


def manager_redis(config: Config) -> aioredis.Redis:
    """The manager's Redis client. redis-py's default retries up to ten times with backoff, on timeouts
    too, so a short Redis restart held the manager for seconds after Redis was back; the manager has
    its own outage backoff (backoff.py), so the client retries twice, quickly, on broken connections
    only. A script retried after its first run did happen is harmless here: every manager script
    checks the state it moves from (a second move.lua returns 0, a second add_pending.lua refuses)."""
    return connect(config.redis, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2,
                                             supported_errors=(redis_errors.ConnectionError,)))


def default_id() -> str:
    """Unique per process. Give a manager a stable id (`manager_id=`) to have a restart take its pools
    back at once, instead of after their leases expire; two live managers must never share one."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class PassReport:
    worked: list[str] = field(default_factory=list)  # pools this manager held and passed over
    elsewhere: list[str] = field(default_factory=list)  # pools held by another manager
    waiting: list[str] = field(default_factory=list)  # pools skipped while their provider backs off
    failed: dict[str, str] = field(default_factory=dict)  # pool -> error of this pass
    clones: int = 0  # clones queued by this pass
    tasks: int = 0  # disk/snapshot/revert tasks started


class Manager:
    def __init__(self, config: Config, redis_client: aioredis.Redis, providers: Mapping[str, Provider],
                 metrics: Metrics, *, manager_id: str | None = None, clock: Callable[[], float] = time.time,
                 keys: Keys | None = None, stop_grace: float = 30.0) -> None:
        self.config = config
        self.id = manager_id or default_id()
        self.stop_grace = stop_grace
        app = config.app
        inventory = Inventory(redis_client, keys, config.redis.data_ttl)
        self.ctx = Context(
            config=config, inventory=inventory, providers=providers, metrics=metrics,
            runner=ProviderRunner(app.task_limit),
            leases=Leases(inventory, self.id, app.manager_lease_seconds),
            presence=Presence(inventory, self.id, stale_after=app.manager_lease_seconds),
            owner=self.id, health=HealthReport(inventory, self.id, config), clock=clock)
        self.cloner = Cloner(self.ctx)
        self.destroyer = Destroyer(self.ctx)
        self.tasks = TaskQueues(self.ctx)
        self.settings = PoolSettings(self.ctx)
        self.workers: dict[str, PoolWorker] = {}
        for pool in config.pools:
            if pool.provider in providers:
                self.workers[pool.name] = PoolWorker(self.ctx, pool, providers[pool.provider], self.cloner,
                                                     self.destroyer)
            else:
                log.error("pool skipped pool=%s: provider %r is not available", pool.name, pool.provider)
        self.ondemand = OnDemand(self.ctx, self.cloner, self.workers)
        self.demand = DemandSizing(self.ctx, self.workers)
        # The dashboard's samples carry each demand-sized pool's target, as last kept.
        self.sampler = Sampler(self.ctx, self.workers,
                               targets=lambda: {pool: target.size for pool, target in (self.demand.kept or {}).items()})
        limit = app.manager_backoff_max
        self._redis_outage = Outage("redis", limit)
        self._provider_outages = {name: Outage(f"provider {name}", limit) for name in providers}
        self._pool_outages = {name: Outage(f"pool {name}", limit) for name in self.workers}
        self._registered = False
        self._closed = False

    @property
    def inventory(self) -> Inventory:
        return self.ctx.inventory

    # One pass ------------------------------------------------------------------------------------

    async def run_once(self, pools: Iterable[str] | None = None) -> PassReport:
        """One pass over every pool (or over `pools`). Clones, destroys and tasks it starts keep running
        after it returns (`drain()` waits for them). Raises redis's ConnectionError or TimeoutError when
        Redis is unreachable; provider failures are reported, logged once, and backed off from."""
        if not self._registered:
            await self.inventory.register_pools(self.workers)
            await self.inventory.index_held(self.workers)  # the original may have run here since we last did
            await self.settings.publish(worker.base for worker in self.workers.values())
            self._registered = True
        self.ctx.pooler_id = await ownership.identify(self.inventory, self.config.app.pooler_id,
                                                      self.ctx.pooler_id)
        await self.cloner.slots.beat()
        names = [name for name in (self.workers if pools is None else pools) if name in self.workers]
        held = await self.ctx.leases.acquire(names)
        report = PassReport(elsewhere=[name for name in names if name not in held])
        await self.ctx.leases.watch(report.elsewhere)
        due: list[str] = []
        for name in names:
            if name in held:
                provider = self.workers[name].pool.provider
                ready = self._provider_outages[provider].ready() and self._pool_outages[name].ready()
                (due if ready else report.waiting).append(name)
        plans = await self.settings.plan(self.workers[name].base for name in due)
        sized = await self.demand.size({name: plans[name].pool for name in due})
        for name in due:
            self.workers[name].pool = sized[name]
        listed = await listing.read_all(self.ctx, self.cloner,
                                        ((self.workers[name].pool, self.workers[name].provider) for name in due))
        checking = asyncio.Semaphore(_CHECKS)

        async def check(name: str) -> int:
            async with checking:
                return await self.workers[name].check(plans[name].drain, listed.get(name))

        results = await asyncio.gather(*(check(name) for name in due), return_exceptions=True)
        short: dict[str, int] = {}
        for name, result in zip(due, results, strict=True):
            if isinstance(result, int):
                await self.settings.settle(plans[name])
                short[name] = result
                report.worked.append(name)
                self._provider_outages[self.workers[name].pool.provider].recovered()
                self._pool_outages[name].recovered()
                self.ctx.health.pool_read(name)
            else:
                self._failed(name, result, report)
        report.clones = await self.ondemand.run() + self._fill(short)  # a waiting client's clones first
        report.tasks = await self.tasks.run()
        await self.ctx.health.publish(self.ctx.leases.pools)
        return report

    def _failed(self, name: str, error: BaseException, report: PassReport) -> None:
        if redis_fault(error):
            raise error  # the pass's Redis outage, not this pool's
        report.failed[name] = str(error)
        if isinstance(error, ProviderError):
            self.ctx.health.pool_failed(name, error)
        if isinstance(error, ProviderUnavailable):
            self._provider_outages[self.workers[name].pool.provider].failed(error)
        elif isinstance(error, ProviderError):
            self._pool_outages[name].failed(error)
        elif isinstance(error, Exception):
            log.error("pass failed pool=%s", name, exc_info=error)
            self._pool_outages[name].failed(f"{type(error).__name__}: {error}")
        else:
            raise error  # cancellation and the like

    def _fill(self, short: dict[str, int]) -> int:
        """Queue the missing clones round-robin across pools (the clone slots are served in order)."""
        queued = 0
        while any(short.values()):
            for name, missing in short.items():
                if missing:
                    worker = self.workers[name]
                    self.cloner.start(worker.pool, worker.provider)
                    short[name] = missing - 1
                    queued += 1
        return queued

    async def drain(self) -> None:
        """Wait for every clone, destroy and task started so far to end."""
        while self.cloner.inflight or self.cloner.queued.total() or self.destroyer.inflight:
            await self.cloner.drain()
            await self.destroyer.drain()
        await self.tasks.drain()

    # The loop ------------------------------------------------------------------------------------

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Passes until `stop` is set; then `shutdown()`. Survives Redis and provider outages (backoff with
        jitter, one log line when one starts and one when it ends)."""
        keeper = asyncio.create_task(self._keep_leases(stop), name="lease keeper")
        watcher = asyncio.create_task(self.ondemand.watch(stop), name="on-demand watcher")
        sampler = asyncio.create_task(self.sampler.run(stop), name="sampler")
        log.info("manager started id=%s pools=%d task_limit=%d", self.id, len(self.workers),
                 self.config.app.task_limit)
        try:
            next_full = 0.0
            while not stop.is_set():
                started = time.monotonic()
                full = started >= next_full
                pools = None if full else set(self.ctx.woken)
                self.ctx.woken.clear()
                self.ctx.wake.clear()
                delay = await self._pass(pools)
                # How long a pass takes over how many pools: bench/manager_scale.py reads it.
                log.debug("pass done full=%s pools=%d seconds=%.3f", full,
                          len(self.workers) if pools is None else len(pools), time.monotonic() - started)
                if full or delay > self.config.app.manager_loop_seconds:
                    next_full = started + delay
                await self._pause(stop, next_full, started, waking=not self._redis_outage.down)
        finally:
            keeper.cancel()
            watcher.cancel()
            sampler.cancel()
            await self.shutdown()

    async def _pass(self, pools: set[str] | None) -> float:
        """One pass for the loop; returns the wait before the next full one."""
        try:
            await self.run_once(pools)
        except Exception as err:
            fault = redis_faults.explain(err, self.config.redis)
            if fault is not None:
                return self._redis_outage.failed(fault.logged(), state=fault.kind)
            log.exception("manager pass failed")  # a bug in a pass must not stop the manager
            return self.config.app.manager_loop_seconds
        self._redis_outage.recovered()
        return self.config.app.manager_loop_seconds

    async def _pause(self, stop: asyncio.Event, until: float, started: float, waking: bool) -> None:
        """Until the next full pass, `stop`, or (when `waking`) a finished clone, no sooner than
        _WAKE_GAP after the last pass started."""
        waiters = [asyncio.create_task(stop.wait())]
        if waking:
            waiters.append(asyncio.create_task(self.ctx.wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=max(0.0, until - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.ctx.wake.is_set() and not stop.is_set():
            await asyncio.sleep(max(0.0, started + _WAKE_GAP - time.monotonic()))

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Renew leases and heartbeat between passes, so a long pass never lets a lease lapse."""
        every = max(self.config.app.manager_lease_seconds / 3, 0.5)
        while not stop.is_set():
            await asyncio.sleep(every)
            try:
                await self.ctx.leases.renew()
                await self.cloner.slots.beat()
                await self.ctx.health.publish(self.ctx.leases.pools)  # fresh through a long pass
            except Exception as err:
                if not redis_fault(err):
                    log.exception("leases not renewed")
                # else: the passes report Redis outages

    # Stopping ------------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop cloning, give running clones, destroys and tasks `stop_grace` seconds to be recorded,
        hand the pools over (release the leases) and leave. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.cloner.stop(self.stop_grace)
        await self.destroyer.stop(self.stop_grace)
        await self.tasks.stop(self.stop_grace)
        try:
            await self.ctx.leases.release(self.workers)
            await self.ctx.presence.leave(time.time())
            await self.ctx.health.withdraw()
        except redis_errors.RedisError as err:  # whatever Redis says, the manager stops cleanly
            fault = redis_faults.explain(err, self.config.redis)
            log.warning("leases not released (they expire by themselves): %s",
                        fault.logged() if fault is not None else f"redis: {err}")
        self.ctx.runner.close()
        log.info("manager stopped id=%s", self.id)

    async def __aenter__(self) -> Manager:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.shutdown()
