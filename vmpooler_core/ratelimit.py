"""Rate-limit buckets as the Lua scripts take them (lua/gcra.lua), and their answer as an exception.

Which bucket a request counts against is decided in the script, where the token's existence is known:
the token's when it exists, the client address's otherwise. The caller only names both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ClassLimits
from .errors import RateLimited
from .keys import Keys
from .replies import OverRate


@dataclass(frozen=True, slots=True)
class Bucket:
    token: str  # "" = no token to count against
    token_limit: int
    token_period_ms: int
    token_key: str
    address_limit: int
    address_period_ms: int
    address_key: str

    @classmethod
    def of(cls, keys: Keys, request_class: str, limits: ClassLimits, token: str, address: str) -> Bucket:
        return cls(token, limits.per_token.limit, limits.per_token.period * 1000,
                   keys.rate_bucket(request_class, "token", token) if token else "",
                   limits.per_address.limit, limits.per_address.period * 1000,
                   keys.rate_bucket(request_class, "address", address))

    def args(self) -> list[str | int]:
        """The seven arguments gcra.lua's rate_limit() reads, in its order."""
        return [self.token, self.token_limit, self.token_period_ms, self.token_key,
                self.address_limit, self.address_period_ms, self.address_key]


def exceeded(over: OverRate) -> RateLimited:
    """The exception for a script's answer that the request is over its limit, in whole seconds."""
    return RateLimited(over.limit, over.period_ms // 1000, max(1, math.ceil(over.retry_ms / 1000)),
                       math.ceil(over.reset_ms / 1000))
