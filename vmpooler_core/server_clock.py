"""The Redis server's clock as this process reads it: how a request's deadline, an instant of the local
event loop's clock, becomes an instant of Redis's clock (TIME), so that the scripts that change state for a
request (checkout, return, write: `scripts.DEADLINED`) refuse inside Redis to run after it.

Why: a request answered 503 at its deadline (vmpoolerd/api/endpoint.py) may have sent its script
already. Redis busy with something else, or the network holding the packets, then runs it afterwards: a
checkout the client was told failed takes a VM that nobody holds. Only Redis knows when it runs a
script, so the script itself compares Redis's TIME with the deadline (lua/deadline.lua) and, when late,
does nothing and answers "LATE ...", raised here as `Late`: the same 503 as the deadline's.

Clocks: the deadline is local (asyncio's monotonic clock) and the script reads the server's wall clock,
so each runner keeps the offset between the two, read with one TIME call (the offset at the call's
middle, wrong by at most half its round trip, which is taken off the deadline: it errs early, never
late). It is read again every `REREAD` seconds, not per request: the two clocks drift apart by NTP's
slewing, at most 0.5 ms a second each, so by at most 10 ms between readings, which the API's margin
(deadlines.py) covers. After a LATE answer it is read again at once: Redis's clock may have been stepped,
or the client may now reach another server (a Sentinel failover).

The request's deadline reaches the runner as a context variable (`ChangesUntil`), set by the API around
each request as asyncio.timeout is: its value is each request's own (a task's context), never shared.
An argument instead would have to pass through every call between a handler and the script (Checkout,
Access, vms, Inventory), and a call that forgot it would silently lose the check. Outside a request (the
manager, the CLI) the scripts get no deadline and run whenever Redis reaches them.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar, Token
from types import TracebackType

from redis import asyncio as aioredis

from .errors import BackendUnavailable

REREAD = 10.0  # seconds between readings of the offset between the local clock and Redis's

# The request's deadline for state changes, on the event loop's clock; None outside a request.
_CHANGES_UNTIL: ContextVar[float | None] = ContextVar("vmpooler_changes_until", default=None)


class Late(BackendUnavailable):
    """Redis reached a request's change after the request's deadline, and did nothing."""

    def __init__(self, reply: str) -> None:
        _, now, deadline = (reply.split() + ["0", "0"])[:3]
        late_ms = max(0, int(now) - int(deadline)) // 1000
        super().__init__(f"redis did not answer in time: it reached the request {late_ms} ms after its "
                         "deadline, and did nothing")


class ChangesUntil:
    """`with ChangesUntil(when):` the state-changing scripts run inside it refuse to run after `when`
    (the running event loop's clock, as asyncio.Timeout.when())."""

    __slots__ = ("_token", "_when")

    def __init__(self, when: float) -> None:
        self._when = when
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        self._token = _CHANGES_UNTIL.set(self._when)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._token is not None:
            _CHANGES_UNTIL.reset(self._token)


class ServerClock:
    """The offset between this process's monotonic clock and the Redis server's TIME, for one runner."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._offset = 0.0  # server time minus local monotonic time, seconds
        self._error = 0.0  # how far the offset may be wrong: half the round trip that read it
        self._read_at = float("-inf")
        self._reading: asyncio.Future[None] | None = None

    async def deadline(self, reserve: float = 0.0) -> str:
        """deadline.lua's argument: "" outside a request (no deadline), else the instant of Redis's clock
        (microseconds since the epoch) after which the request's change must not be made, `reserve`
        seconds before the request's own (the time its confirmation may then take)."""
        until = _CHANGES_UNTIL.get()
        if until is None:
            return ""
        now = time.monotonic()
        if now - self._read_at > REREAD:
            await self._read()
            now = time.monotonic()
        remaining = until - asyncio.get_running_loop().time() - reserve
        return str(int((now + self._offset - self._error + remaining) * 1_000_000))

    def late(self) -> None:
        """A script answered LATE: read the offset again before the next deadline."""
        self._read_at = float("-inf")

    async def _read(self) -> None:
        # Concurrent requests share one reading; it goes on when the request that started it is cancelled.
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._measure())
            self._reading.add_done_callback(self._done)
        await asyncio.shield(self._reading)

    def _done(self, done: asyncio.Future[None]) -> None:
        self._reading = None
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have been cancelled meanwhile

    async def _measure(self) -> None:
        before = time.monotonic()
        seconds, micros = await self._client.time()
        after = time.monotonic()
        self._offset = int(seconds) + int(micros) / 1_000_000 - (before + after) / 2
        self._error = (after - before) / 2
        self._read_at = after
