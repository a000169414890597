"""Provider calls, which block (pyvmomi), run in one bounded thread pool off the event loop.

The pool has `task_limit` threads for clones (the clone slots of `Cloner` bound them, so a clone never
waits for a thread) plus a few for everything else (inventory reads, destroys, disk and snapshot tasks),
bounded by a semaphore of their own so that a burst of destroys cannot delay the fill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from vmpooler_core.provider import ProviderError

T = TypeVar("T")
OTHER_THREADS = 8


class ProviderRunner:
    def __init__(self, clone_threads: int, other_threads: int = OTHER_THREADS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=clone_threads + other_threads,
                                            thread_name_prefix="vmpooler-provider")
        self._others = asyncio.Semaphore(other_threads)

    async def clone(self, fn: Callable[..., T], *args: object) -> T:
        """For a caller holding a clone slot."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def call(self, fn: Callable[..., T], *args: object, timeout: float = 600.0) -> T:
        """Any other call. A call that outlives `timeout` is abandoned (its thread finishes on its own;
        pyvmomi has its own socket timeout) and reported as a ProviderError."""
        async with self._others:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                what = getattr(fn, "__name__", "call")
                raise ProviderError(f"{what} timed out after {timeout:.0f}s") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
