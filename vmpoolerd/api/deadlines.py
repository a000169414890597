"""Request deadlines: no client waits on a dead Redis (or LDAP server) for longer than the deadline, and a
request answered 503 for it changes nothing.

A request runs its handler in `async with deadlines.limit():`, which raises TimeoutError when the
deadline passes: `asyncio.timeout`, a timer per request. One timer sweeping all requests in flight,
which took its cancellations back with `Task.uncancel`, saved 6-7% of a request's server CPU called
inline, about 1% behind this `limit()` (bench/api_load.py): too little for its loss of precision and
its reliance on asyncio's cancellation internals.

Inside it, `changes(limit)` gives the scripts that change state for the request (checkout, return, the
plain writes) a deadline of their own, `margin` earlier, which Redis checks on its own clock when it runs
them (vmpooler_core/server_clock.py): a script sent in time that Redis reaches after it does nothing. The
margin is the time a reply has to come back and be read before the request's timer fires: a change made
just before its deadline, whose answer then arrived after the 503, would be one the client was told
failed. A tenth of the deadline, at most 100 ms: a reply on a healthy network and event loop takes well
under a millisecond; a request that has waited that long is better refused whole.
"""

from __future__ import annotations

import asyncio

from vmpooler_core.server_clock import ChangesUntil

MARGIN = 0.1  # seconds, at most
MARGIN_SHARE = 0.1  # of the deadline


class Deadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.margin = min(MARGIN, seconds * MARGIN_SHARE)

    def limit(self) -> asyncio.Timeout:
        """The deadline of the request that enters it: TimeoutError when it passes."""
        return asyncio.timeout(self.seconds)

    def changes(self, limit: asyncio.Timeout) -> ChangesUntil:
        """Inside `limit`: the deadline of the request's changes, `margin` before the request's own."""
        when = limit.when()
        assert when is not None, "limit() always has a deadline"
        return ChangesUntil(when - self.margin)
