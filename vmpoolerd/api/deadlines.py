"""Request deadlines: no client waits on a dead Redis (or LDAP server) for longer than the deadline.

One timer for all requests in flight, rather than `asyncio.timeout` per request: that one schedules and
cancels a timer of its own for every request (and asks for the running loop, a getpid() system call on
Python 3.11), about 4 µs of CPU a request, where the sweep here costs a dictionary entry. The price is
precision: a request is cancelled within `tick` seconds after its deadline, not at it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Task = asyncio.Task[Any]


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, tick: float | None = None) -> None:
        self.loop = loop
        self.seconds = seconds
        self.tick = tick if tick is not None else min(0.25, seconds / 4)
        self._running: dict[Task, float] = {}  # task -> when its deadline passes (loop time)
        self._expired: set[Task] = set()  # cancelled by a sweep, not yet told so
        self._sweeper: asyncio.TimerHandle | None = None

    def begin(self) -> tuple[Task, int]:
        """Start the current task's deadline: (the task, its cancel requests so far), both for `end`,
        which must follow in a `finally`."""
        task = asyncio.current_task(self.loop)
        assert task is not None, "deadlines are for requests, which run in tasks"
        self._running[task] = self.loop.time() + self.seconds
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.tick, self._sweep)
        return task, task.cancelling()

    def end(self, task: Task, cancels: int) -> bool:
        """True when the task was cancelled for its deadline and for nothing else: the caller then
        answers its CancelledError as a timeout. The deadline's cancel request is taken back either
        way; another one (the server stopping, in the same loop turn) still stands, and then this is
        False so that the caller lets the CancelledError through."""
        if self._running.pop(task, None) is not None:
            return False
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() <= cancels

    @asynccontextmanager
    async def limit(self) -> AsyncIterator[None]:
        """The current task's deadline, as `asyncio.timeout(seconds)`: TimeoutError when it passes."""
        task, cancels = self.begin()
        try:
            yield
        except asyncio.CancelledError:
            if self.end(task, cancels):
                raise TimeoutError() from None
            raise
        except BaseException:
            self.end(task, cancels)
            raise
        else:
            self.end(task, cancels)

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
