"""The API's disk, snapshot and revert requests (`vmpooler__tasks__disk` etc., "<host>:<argument>").

Each pass takes what is queued, up to a bound, and runs it on the VM's provider. Taking a task moves it
into this manager's record of tasks taken (lua/take_tasks.lua), which it leaves only once done or put
back (lua/task_done.lua): a manager that dies with tasks taken loses none of them, since the next pass of
any manager puts the dead one's record back in the queues. (The original, and this pooler before, popped
the task outright, and a manager killed then lost it.) The queues keep the original's keys and members,
so it and this pooler can share one Redis.

The tasks of one VM run one after another (a second disk must not race the first's bookkeeping); a task
for a VM that is busy with an earlier one goes back to the queue for the next pass. Results are written
as the original writes them: `disk` = "+8gb:+16gb", `snapshot:<name>` = time taken.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from vmpooler_core import clock
from vmpooler_core.keys import TASK_QUEUES
from vmpooler_core.provider import ProviderError, ProviderUnavailable

from .background import Background
from .context import Context, redis_fault

log = logging.getLogger("vmpooler.manager")
_PER_PASS = 50  # tasks taken from each queue per pass
_TIMEOUT = 1800.0
_KIND = {"disk": "disk", "snapshot": "snapshot", "snapshot-revert": "revert"}  # queue -> what is done

Task = tuple[str, str]  # (queue, "<host>:<argument>")
Fields = dict[str, str]


class TaskQueues:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._busy: set[str] = set()  # hosts with a task running
        self._work = Background()
        self._started = False  # the first pass puts back what an earlier process of the same id had taken
        # Tasks done (fields to record) or to put back (None) that Redis could not be told of: told next pass.
        self._unsettled: dict[Task, Fields | None] = {}

    async def run(self) -> int:
        """Take and start the queued tasks; returns how many started."""
        for (queue, task), fields in list(self._unsettled.items()):
            del self._unsettled[(queue, task)]
            await self._settle(queue, task, fields)
        requeued, taken = await self.ctx.inventory.take_tasks(
            self.ctx.owner, TASK_QUEUES, _PER_PASS, now=time.time(), stale_after=self.ctx.presence.stale_after,
            own=not self._started)
        self._started = True
        if requeued:
            log.info("tasks put back in their queues: %d, taken by a manager that stopped before doing them",
                     requeued)
        by_host: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # host -> (queue, task, argument)
        for queue, tasks in taken.items():
            for task in tasks:
                host, sep, argument = task.partition(":")
                if not sep or not host or not argument:
                    log.warning("task dropped: malformed %s task %r", _KIND[queue], task)
                    await self._settle(queue, task, {})
                elif host in self._busy:
                    await self._settle(queue, task, None)
                else:
                    by_host[host].append((queue, task, argument))
        for host, work in by_host.items():
            self._busy.add(host)
            self._work.spawn(self._run_host(host, work), name=f"tasks {host}")
        return sum(len(work) for work in by_host.values())

    async def _run_host(self, host: str, work: list[tuple[str, str, str]]) -> None:
        try:
            for index, (queue, task, argument) in enumerate(work):
                fields: Fields | None
                try:
                    fields = await self._run_one(_KIND[queue], host, argument)
                except ProviderUnavailable as err:
                    # The provider is down (the pool passes log that): keep the work for later.
                    log.debug("%s task of %s put back: %s", _KIND[queue], host, err)
                    for again_queue, again, _ in work[index:]:
                        await self._settle(again_queue, again, None)
                    return
                except Exception as err:
                    if redis_fault(err):  # before the provider was called (_run_one): kept for later
                        log.warning("%s task of %s put back: redis: %s", _KIND[queue], host, err)
                        fields = None
                    else:  # a bug: the task is dropped, as a failed one is, and the manager goes on
                        log.exception("%s task crashed vm=%s", _KIND[queue], host)
                        fields = {}
                await self._settle(queue, task, fields)
        finally:
            self._busy.discard(host)

    async def _settle(self, queue: str, task: str, fields: Fields | None) -> None:
        """The task leaves this manager's record: done with `fields` recorded, or (None) put back. When
        Redis cannot be told, kept for the next pass: until then it stays taken by a live manager."""
        try:
            await self.ctx.inventory.task_done(self.ctx.owner, queue, task, fields, back=fields is None)
        except Exception as err:
            if not redis_fault(err):
                raise
            log.warning("%s task %s not settled yet: redis: %s", _KIND[queue], task, err)
            self._unsettled[(queue, task)] = fields

    async def _run_one(self, kind: str, host: str, argument: str) -> Fields:
        """Run one task; returns the fields to record on the VM (none when it failed or was dropped)."""
        vm = await self.ctx.inventory.vm(host)
        pool_name = vm.get("pool") or vm.get("template") or ""
        pool = self.ctx.config.pool_index.get(pool_name)
        provider = self.ctx.providers.get(pool.provider) if pool else None
        if pool is None or provider is None or vm.get("destroy"):
            log.warning("%s task dropped vm=%s: not a live VM of a configured pool", kind, host)
            return {}
        fields: Fields = {}
        try:
            if kind == "disk":
                size = int(argument)
                await self.ctx.runner.call(provider.add_disk, pool.name, host, size, pool.datastore,
                                           timeout=_TIMEOUT)
                # The VM as read before the call: its tasks run one at a time, so its disks are still those.
                # (No Redis call after the provider's: a Redis fault is then always before it, see _run_host.)
                disks = [d for d in vm.get("disk", "").split(":") if d]
                fields = {"disk": ":".join([*disks, f"+{size}gb"])}
            elif kind == "snapshot":
                await self.ctx.runner.call(provider.snapshot, pool.name, host, argument, timeout=_TIMEOUT)
                fields = {f"snapshot:{argument}": clock.stamp(self.ctx.clock())}
            else:
                await self.ctx.runner.call(provider.revert, pool.name, host, argument, timeout=_TIMEOUT)
        except ProviderUnavailable:
            raise
        except (ProviderError, ValueError) as err:
            log.warning("%s failed pool=%s vm=%s argument=%s: %s", kind, pool.name, host, argument, err)
            return {}
        log.info("%s done pool=%s vm=%s argument=%s", kind, pool.name, host, argument)
        return fields

    async def drain(self) -> None:
        await self._work.drain()

    async def stop(self, grace: float) -> None:
        await self._work.stop(grace)
