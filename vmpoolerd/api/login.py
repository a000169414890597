"""A login (HTTP Basic credentials on the token routes): throttled, checked in a worker thread, logged.

- Throttled first (vmpooler_core/login_throttle.py): a user name or address with too many recent failures
  is answered 429 with Retry-After at once, and the directory is not asked.
- The credentials are checked in a pool of LDAP_WORKERS threads of its own (LDAP and PBKDF2 block): a
  frozen directory then holds at most those threads, not the worker threads everything else shares, and
  never the event loop. The check is given the request's deadline less a margin, so that it ends, and says
  why, before the request would be cut off; if the deadline comes first anyway the thread is left to
  finish by itself (its sockets have timeouts and it always unbinds).
- Answered with the user's canonical name (as the directory spells it), 401 for wrong credentials, or 503
  (`directory_unavailable`, with each host's reason) when no directory host could judge them.
- Every failed login is one line on the audit log (user, client address, request, reason), the user name
  escaped (audit.py, logsafe.py). A directory host that cannot be asked is logged once when that starts or
  its reason changes, then once a minute while it lasts (with a count), and once when it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from vmpooler_core import audit, logsafe
from vmpooler_core.audit import Caller
from vmpooler_core.auth import Authenticator, Verdict
from vmpooler_core.config import FailedLogins
from vmpooler_core.errors import DirectoryUnavailable, RateLimited, Unauthorized
from vmpooler_core.inventory import Inventory
from vmpooler_core.login_throttle import LoginThrottle, Outcome

log = logging.getLogger("vmpooler.auth")
LDAP_WORKERS = 8
MARGIN = 1.0  # seconds of the request's deadline kept for the Redis calls around the check
WRONG = "the user name or password is wrong"


class DirectoryLog:
    """Outages of directory hosts in the log: not one line per login while thousands fail."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.down: dict[str, tuple[str, float, int]] = {}  # host -> (reason, when logged, failures since)

    def note(self, verdict: Verdict) -> None:
        now = time.monotonic()
        for fault in verdict.faults:
            before = self.down.get(fault.host)
            if before is not None and before[0] == fault.reason and now - before[1] < self.every:
                self.down[fault.host] = (before[0], before[1], before[2] + 1)
                continue
            more = f" ({before[2]} more failed logins since)" if before is not None and before[2] else ""
            log.warning("directory %s cannot be asked: %s%s", fault.host, logsafe.text(fault.reason), more)
            self.down[fault.host] = (fault.reason, now, 0)
        for host in verdict.answered:
            if self.down.pop(host, None) is not None:
                log.warning("directory %s answers again", host)


class Login:
    def __init__(self, authenticator: Authenticator, settings: FailedLogins, inventory: Inventory) -> None:
        self.authenticator = authenticator
        self.throttle = LoginThrottle(settings, inventory)
        self.outages = DirectoryLog()
        self._pool: ThreadPoolExecutor | None = None

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(LDAP_WORKERS, thread_name_prefix="vmpooler-login")
        return self._pool

    async def user(self, who: Caller, user: str, password: str, deadline: float) -> str:
        """The canonical name of the user whose credentials these are; RateLimited, Unauthorized or
        DirectoryUnavailable (each logged) otherwise. `deadline`: the request's, in seconds."""
        tried = who.as_user(user)
        try:
            attempt = await self.throttle.begin(user, who.client)
        except RateLimited as err:
            audit.refused("login", tried, err, level=logging.INFO)
            raise
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(self._workers(), self.authenticator.check, user, password,
                                             max(1.0, deadline - MARGIN))
        outcome: Outcome = "accepted" if verdict.user else "unavailable" if verdict.unavailable else "refused"
        await self.throttle.end(attempt, outcome, verdict)
        self.outages.note(verdict)
        if verdict.user is not None:
            return verdict.user
        error: Unauthorized | DirectoryUnavailable = Unauthorized(WRONG)
        if outcome == "unavailable":
            error = DirectoryUnavailable("the directory cannot check passwords now: " +
                                         "; ".join(f"{fault.host}: {fault.reason}" for fault in verdict.faults))
        audit.refused("login", tried, error, level=logging.INFO)
        raise error
