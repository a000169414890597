"""Destroying completed VMs: the VM stays in `completed` until the provider has destroyed it.

The original took it out of `completed` first, so a destroy that failed or was cut short left a VM that
the next pass re-discovered (A7.7). Here Redis forgets the VM only once the provider confirms, and a
destroy that fails is simply tried again on the next pass. One destroy per VM at a time.
"""

from __future__ import annotations

import logging
import time

from vmpooler_core import audit, clock
from vmpooler_core.metrics import Phase
from vmpooler_core.provider import Provider, ProviderError

from .background import Background
from .context import Context, redis_fault
from .recent import Recent

log = logging.getLogger("vmpooler.manager")
_DESTROY_TIMEOUT = 900.0


class Destroyer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.inflight: dict[str, str] = {}  # host -> pool
        self._finished = Recent()  # the destroys that ended
        self._work = Background()

    def gone_since(self, moment: float) -> set[str]:
        """Hosts whose destroy ended after `moment` (monotonic): an inventory read before that may still
        list them, and they must not be taken for strangers and re-discovered."""
        return self._finished.since(moment)

    def start(self, pool: str, provider: Provider, host: str) -> None:
        if host in self.inflight:
            return
        self.inflight[host] = pool
        self._work.spawn(self._destroy(pool, provider, host), name=f"destroy {host}")

    async def _destroy(self, pool: str, provider: Provider, host: str) -> None:
        started = time.monotonic()
        try:
            await self.ctx.runner.call(provider.destroy, pool, host, timeout=_DESTROY_TIMEOUT)
            self._finished.ended(host)
            entry = audit.entry("destroyed", clock.stamp(self.ctx.clock()), manager=self.ctx.owner)
            await self.ctx.inventory.forget(pool, host, destroyed=True, history=entry)
        except ProviderError as err:
            log.warning("destroy failed pool=%s vm=%s: %s (will retry)", pool, host, err)
            return
        except Exception as err:
            if redis_fault(err):
                # Destroyed but still in `completed`: the next pass finds it gone and forgets it.
                log.debug("destroy of %s not recorded: redis: %s", host, err)
            else:
                log.exception("destroy crashed pool=%s vm=%s", pool, host)
            return
        finally:
            self.inflight.pop(host, None)
        seconds = time.monotonic() - started
        self.ctx.metrics.duration(Phase.DESTROY, pool, seconds)
        log.info("destroyed pool=%s vm=%s seconds=%.1f", pool, host, seconds)

    async def drain(self) -> None:
        await self._work.drain()

    async def stop(self, grace: float) -> None:
        if self.inflight:
            log.info("stopping: waiting up to %.0fs for %d destroy(s) to finish", grace, len(self.inflight))
        await self._work.stop(grace)
