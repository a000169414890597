"""Request deadlines: no client waits on a dead Redis (or LDAP server) for longer than the deadline.

A request runs its handler in `async with deadlines.limit():`, which raises TimeoutError when the
deadline passes: `asyncio.timeout`, a timer per request. One timer sweeping all requests in flight,
which took its cancellations back with `Task.uncancel`, saved 6-7% of a request's server CPU called
inline, about 1% behind this `limit()` (bench/api_load.py): too little for its loss of precision and
its reliance on asyncio's cancellation internals.
"""

from __future__ import annotations

import asyncio


class Deadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def limit(self) -> asyncio.Timeout:
        """The deadline of the request that enters it: TimeoutError when it passes."""
        return asyncio.timeout(self.seconds)
