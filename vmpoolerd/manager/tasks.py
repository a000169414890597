"""The API's disk, snapshot and revert requests (`vmpooler__tasks__disk` etc., "<host>:<argument>").

Each pass takes what is queued, up to a bound, and runs it on the VM's provider. The tasks of one VM run
one after another (a second disk must not race the first's bookkeeping); a task for a VM that is busy
with an earlier one goes back to the queue for the next pass. Results are written as the original
writes them: `disk` = "+8gb:+16gb", `snapshot:<name>` = time taken.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from vmpooler_core import clock
from vmpooler_core.provider import ProviderError, ProviderUnavailable

from .background import Background
from .context import Context, redis_fault

log = logging.getLogger("vmpooler.manager")
_PER_PASS = 50  # tasks taken from each queue per pass
_TIMEOUT = 1800.0


class TaskQueues:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._busy: set[str] = set()  # hosts with a task running
        self._work = Background()

    async def run(self) -> int:
        """Take and start the queued tasks; returns how many started."""
        keys = self.ctx.inventory.keys
        by_host: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # host -> (kind, queue, arg)
        for kind, queue in (("disk", keys.disk_tasks()), ("snapshot", keys.snapshot_tasks()),
                            ("revert", keys.revert_tasks())):
            for item in await self.ctx.inventory.pop_tasks(queue, _PER_PASS):
                host, sep, argument = item.partition(":")
                if not sep or not host or not argument:
                    log.warning("task dropped: malformed %s task %r", kind, item)
                elif host in self._busy:
                    await self.ctx.inventory.queue_task(queue, host, argument)
                else:
                    by_host[host].append((kind, queue, argument))
        for host, work in by_host.items():
            self._busy.add(host)
            self._work.spawn(self._run_host(host, work), name=f"tasks {host}")
        return sum(len(work) for work in by_host.values())

    async def _run_host(self, host: str, work: list[tuple[str, str, str]]) -> None:
        kind = ""
        try:
            for index, (kind, _, argument) in enumerate(work):
                try:
                    await self._run_one(kind, host, argument)
                except ProviderUnavailable as err:
                    # The provider is down (the pool passes log that): keep the work for later.
                    log.debug("%s task of %s put back: %s", kind, host, err)
                    for _, again_queue, again in work[index:]:
                        await self.ctx.inventory.queue_task(again_queue, host, again)
                    return
        except Exception as err:
            if redis_fault(err):
                log.warning("%s task of %s not recorded: redis: %s", kind, host, err)
            else:
                log.exception("%s task crashed vm=%s", kind, host)
        finally:
            self._busy.discard(host)

    async def _run_one(self, kind: str, host: str, argument: str) -> None:
        vm = await self.ctx.inventory.vm(host)
        pool_name = vm.get("pool") or vm.get("template") or ""
        pool = self.ctx.config.pool_index.get(pool_name)
        provider = self.ctx.providers.get(pool.provider) if pool else None
        if pool is None or provider is None or vm.get("destroy"):
            log.warning("%s task dropped vm=%s: not a live VM of a configured pool", kind, host)
            return
        try:
            if kind == "disk":
                size = int(argument)
                await self.ctx.runner.call(provider.add_disk, pool.name, host, size, pool.datastore,
                                           timeout=_TIMEOUT)
                disks = [d for d in (await self.ctx.inventory.vm(host)).get("disk", "").split(":") if d]
                await self.ctx.inventory.set_fields(host, {"disk": ":".join([*disks, f"+{size}gb"])})
            elif kind == "snapshot":
                await self.ctx.runner.call(provider.snapshot, pool.name, host, argument, timeout=_TIMEOUT)
                taken = clock.stamp(self.ctx.clock())
                await self.ctx.inventory.set_fields(host, {f"snapshot:{argument}": taken})
            else:
                await self.ctx.runner.call(provider.revert, pool.name, host, argument, timeout=_TIMEOUT)
        except ProviderUnavailable:
            raise
        except (ProviderError, ValueError) as err:
            log.warning("%s failed pool=%s vm=%s argument=%s: %s", kind, pool.name, host, argument, err)
            return
        log.info("%s done pool=%s vm=%s argument=%s", kind, pool.name, host, argument)

    async def drain(self) -> None:
        await self._work.drain()

    async def stop(self, grace: float) -> None:
        await self._work.stop(grace)
