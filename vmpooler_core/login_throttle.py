"""Failed logins, counted per user name and per client address in Redis (so every API process shares
one count), with growing delays once a few have failed (config.FailedLogins).

A throttled attempt is answered at once (429 with Retry-After), never held: holding it would keep a
connection and a file descriptor per attempt, which is what an attacker sending thousands has most of,
and the directory is not asked, so a throttled guess tells nothing even when it is right. No one else
waits: the check is one script call, and other users and addresses have their own counts.

Each attempt is counted before the credentials are checked and taken back when they were right, or when
no directory could judge them (lua/login_attempt.lua, lua/login_outcome.lua): a count made only after
each failure would let a burst of concurrent attempts all through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from .auth import MAX_USER, Verdict
from .config import FailedLogins
from .errors import RateLimited
from .inventory import Inventory

Outcome = Literal["accepted", "refused", "unavailable"]
HEALTH_SECONDS = 300  # how long what a login saw of the directory's hosts is reported (directory_health.py)


def folded(user: str) -> str:
    """The user name as the count knows it: `JDOE`, ` jdoe` and `jdoe` are one name to throttle."""
    return " ".join(user.split()).casefold()[:MAX_USER]


@dataclass(frozen=True, slots=True)
class Attempt:
    user_key: str
    address_key: str


class LoginThrottle:
    def __init__(self, settings: FailedLogins, inventory: Inventory) -> None:
        self.settings = settings
        self.inventory = inventory

    async def begin(self, user: str, address: str) -> Attempt:
        """Count an attempt; RateLimited (nothing counted) when the user or the address must wait."""
        s, keys = self.settings, self.inventory.keys
        attempt = Attempt(keys.failed_logins("user", folded(user)), keys.failed_logins("address", address))
        reply = await self.inventory.login_attempt(
            attempt.user_key, attempt.address_key, s.allowed, s.max_delay_user * 1000, s.max_delay_address * 1000,
            s.forget_after * 1000)
        if reply[0] != "throttled":
            return attempt
        wait = max(1, math.ceil(int(reply[1]) / 1000))
        whose = "for this user name" if reply[2] == "user" else "from this address"
        raise RateLimited(s.allowed, s.forget_after, wait, math.ceil(time.time()) + wait,
                          f"too many failed logins {whose}; try again in {wait}s")

    async def end(self, attempt: Attempt, outcome: Outcome, verdict: Verdict) -> None:
        """Settle the attempt, and record what it saw of the directory's hosts."""
        hosts: list[str] = []
        for fault in verdict.faults:
            hosts += [fault.host, fault.reason or "failed"]
        for host in verdict.answered:
            hosts += [host, ""]
        await self.inventory.login_outcome(attempt.user_key, attempt.address_key, outcome,
                                           self.inventory.keys.directory_health(), HEALTH_SECONDS * 1000, *hosts)
