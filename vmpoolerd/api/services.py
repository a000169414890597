"""What every handler needs, built once in the app's lifespan and kept on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis import asyncio as aioredis

from vmpooler_core.access import Access
from vmpooler_core.auth import Authenticator
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import Metrics

from .deadlines import Deadlines
from .errors import OutageLog
from .limits import Limiter
from .login import Login

if TYPE_CHECKING:
    from vmpoolerd.prometheus import Registry


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    redis: aioredis.Redis
    inventory: Inventory
    checkout: Checkout
    access: Access
    metrics: Metrics
    authenticator: Authenticator | None
    # Each request may spend `deadlines.seconds` waiting on Redis (or an auth backend) before it is
    # answered 503, so that no client hangs whatever state Redis is in.
    deadlines: Deadlines
    outages: OutageLog
    prometheus: Registry | None = None
    limiter: Limiter | None = None  # None: rate limiting is off
    login: Login | None = None  # None: no authentication configured (login.py)

    @property
    def deadline(self) -> float:
        return self.deadlines.seconds

    @classmethod
    def build(cls, config: Config, redis: aioredis.Redis, metrics: Metrics,
              authenticator: Authenticator | None, deadline: float,
              prometheus: Registry | None = None) -> Services:
        inventory = Inventory(redis, Keys(), config.redis.data_ttl, config.redis.durability)
        limiter = Limiter(config.rate_limits, inventory, config.auth_enabled) if config.rate_limits.enabled else None
        login = Login(authenticator, config.auth.failed_logins, inventory) if authenticator and config.auth else None
        return cls(config, redis, inventory, Checkout(config, inventory, metrics), Access(config, inventory),
                   metrics, authenticator, Deadlines(deadline), OutageLog(redis=config.redis), prometheus,
                   limiter, login)
