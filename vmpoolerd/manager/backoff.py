"""Outages of Redis, of a provider, or of one pool's inventory: back off with jitter, log only changes.

A dependency that fails is retried after 1, 2, 4 ... seconds up to a maximum, each wait drawn between
half and all of that (jitter, so that several managers do not retry in step). The first failure logs one
warning and the recovery one line with the outage's length; the failures in between log nothing, so an
outage of an hour is two lines, not thousands.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

log = logging.getLogger("vmpooler.manager")


class Outage:
    def __init__(self, what: str, max_delay: float, base: float = 1.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.what = what
        self.max_delay = max(max_delay, 0.0)
        self.base = min(base, self.max_delay) if self.max_delay else 0.0
        self.failures = 0
        self.state: str | None = None
        self.since = 0.0
        self.retry_at = 0.0
        self._rng = rng

    @property
    def down(self) -> bool:
        return self.failures > 0

    def ready(self) -> bool:
        """Whether to try the dependency now: it is up, or its back-off wait is over."""
        return not self.failures or time.monotonic() >= self.retry_at

    def failed(self, err: BaseException | str, state: str | None = None) -> float:
        """Record a failure; returns the seconds to wait before the next try. `state` names the kind of
        failure (for Redis: unreachable, credentials refused, a missing ACL permission, ...): a new kind
        during an outage is logged too, once."""
        now = time.monotonic()
        if not self.failures:
            self.since = now
        if not self.failures or state != self.state:
            log.warning("%s unavailable: %s (retrying with backoff)", self.what, err)
        self.state = state
        self.failures += 1
        delay = min(self.max_delay, self.base * 2.0 ** min(self.failures - 1, 30))
        delay = delay / 2 + self._rng() * delay / 2
        self.retry_at = now + delay
        return delay

    def recovered(self) -> None:
        if self.failures:
            log.info("%s available again after %.1fs", self.what, time.monotonic() - self.since)
        self.failures = 0
        self.state = None
        self.retry_at = 0.0
