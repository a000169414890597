"""Rate limiting at the API: which bucket a request counts against. (Which class each route is in is
said by the route table, routing.py.)

Checkouts and returns are counted by their own script (checkout.lua, return.lua: one round trip for the
work and the count); every other limited request by ratelimit.lua just before its handler runs. Either way the
bucket is the token's when the request carries a token that exists (auth configured), else the client
address's; over the limit the request is answered 429 and nothing is done. (A checkout or return refused
before its script runs, for a malformed body or an unknown pool, did no Redis work and is not counted.)
"""

from __future__ import annotations

import logging
from enum import StrEnum

from redis.exceptions import RedisError
from starlette.requests import Request

from vmpooler_core.config import RateLimitSettings
from vmpooler_core.inventory import Inventory
from vmpooler_core.ratelimit import Bucket, exceeded
from vmpooler_core.replies import OverRate
from vmpooler_core.tokens import TOKEN_RE

log = logging.getLogger("vmpooler.api")


class RateClass(StrEnum):
    """The classes of `rate_limits:` in the configuration, each with its own limits."""

    CHECKOUT = "checkout"
    RETURN = "return"
    OTHER = "other"


class Limiter:
    def __init__(self, settings: RateLimitSettings, inventory: Inventory, auth_enabled: bool) -> None:
        self.settings = settings
        self.inventory = inventory
        # Without auth a token means nothing, so it cannot earn a bucket of its own.
        self.auth_enabled = auth_enabled
        self.failing = False

    def address(self, request: Request) -> str:
        header = self.settings.address_header
        if header is not None:
            forwarded = request.headers.get(header)
            if forwarded:
                # The last entry is the one the (trusted) proxy added; those before it, the client wrote.
                return forwarded.rsplit(",", 1)[-1].strip()[:64] or "unknown"
        client = request.scope.get("client")
        return str(client[0]) if client else "unknown"

    def bucket(self, request: Request, request_class: RateClass) -> Bucket:
        token = ""
        if self.auth_enabled:
            sent = request.headers.get("x-auth-token")
            if sent and TOKEN_RE.fullmatch(sent):
                token = sent
        return Bucket.of(self.inventory.keys, request_class, self.settings.classes[request_class], token,
                         self.address(request))

    async def check(self, request: Request, request_class: RateClass) -> None:
        """Count the request; RateLimited when it is over. With Redis failing, requests go unlimited
        (said once per outage): the handler's own Redis call then answers for the outage."""
        try:
            reply = await self.inventory.rate_limit(self.bucket(request, request_class))
        except RedisError as err:
            if not self.failing:
                self.failing = True
                log.warning("rate limiter: redis failed (%s); requests are not limited until it answers",
                            type(err).__name__)
            return
        if self.failing:
            self.failing = False
            log.warning("rate limiter: redis answers again; requests are limited again")
        if isinstance(reply, OverRate):
            raise exceeded(reply)
