"""Request deadlines: no client waits on a dead Redis (or LDAP server) for longer than the deadline.

A request runs its handler in `async with deadlines.limit():`, which raises TimeoutError when the
deadline passes, as `asyncio.timeout` does. Two implementations, chosen by the "deadlines" seam
(vmpooler_core/seams.py):
- `TimeoutDeadlines`, the stock path: `asyncio.timeout` per request. It schedules and cancels a timer
  of its own for every request (and asks for the running loop, a getpid() system call on Python 3.11);
- `SweptDeadlines`, the fast path: one timer for all requests in flight, where a request costs a
  dictionary entry. The price is precision: a request is cancelled within `tick` seconds after its
  deadline, not at it. It relies on `Task.cancelling`/`uncancel` to take its cancellation back.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol

from vmpooler_core.seams import Seams, lacks

Task = asyncio.Task[Any]


class Deadlines(Protocol):
    seconds: float

    def limit(self) -> AbstractAsyncContextManager[object]:
        """The deadline of the request that enters it: TimeoutError when it passes."""
        ...

    def close(self) -> None: ...


def make_deadlines(loop: asyncio.AbstractEventLoop, seconds: float, seams: Seams) -> Deadlines:
    if seams.fast("deadlines", lambda: lacks(asyncio.Task, "cancelling", "uncancel")):
        return SweptDeadlines(loop, seconds)
    return TimeoutDeadlines(seconds)


class TimeoutDeadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def limit(self) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(self.seconds)

    def close(self) -> None:
        pass  # each timer goes with its request


class SweptDeadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, tick: float | None = None) -> None:
        self.loop = loop
        self.seconds = seconds
        self.tick = tick if tick is not None else min(0.25, seconds / 4)
        self._running: dict[Task, float] = {}  # task -> when its deadline passes (loop time)
        self._expired: set[Task] = set()  # cancelled by a sweep, not yet told so
        self._sweeper: asyncio.TimerHandle | None = None

    def limit(self) -> _Swept:
        return _Swept(self)

    def begin(self) -> tuple[Task, int]:
        """Start the current task's deadline: (the task, its cancel requests so far), both for `end`."""
        task = asyncio.current_task(self.loop)
        assert task is not None, "deadlines are for requests, which run in tasks"
        self._running[task] = self.loop.time() + self.seconds
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.tick, self._sweep)
        return task, task.cancelling()

    def end(self, task: Task, cancels: int) -> bool:
        """True when the task was cancelled for its deadline and for nothing else: its CancelledError is
        then a timeout. The deadline's cancel request is taken back either way; another one (the server
        stopping, in the same loop turn) still stands, and then this is False so that the CancelledError
        goes on up."""
        if self._running.pop(task, None) is not None:
            return False
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() <= cancels

    def _sweep(self) -> None:
        now = self.loop.time()
        overdue = [task for task, due in self._running.items() if due <= now]
        for task in overdue:
            del self._running[task]
            self._expired.add(task)
            task.cancel()
        self._sweeper = self.loop.call_later(self.tick, self._sweep) if self._running else None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _Swept:
    """One request's deadline in a `SweptDeadlines`."""

    __slots__ = ("_deadlines", "_task", "_cancels")

    def __init__(self, deadlines: SweptDeadlines) -> None:
        self._deadlines = deadlines

    async def __aenter__(self) -> None:
        self._task, self._cancels = self._deadlines.begin()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._deadlines.end(self._task, self._cancels) and kind is asyncio.CancelledError:
            raise TimeoutError from exc
