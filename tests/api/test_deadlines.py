"""Request deadlines (vmpoolerd/api/deadlines.py): the request sees TimeoutError when its deadline passes,
and any other cancellation (the server stopping) goes on up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from vmpoolerd.api.deadlines import Deadlines


async def _request(deadlines: Deadlines, work: Awaitable[None], entered: list[asyncio.Timeout] | None = None) -> str:
    """What endpoint.py does around a handler."""
    limit = deadlines.limit()
    if entered is not None:
        entered.append(limit)
    try:
        async with limit:
            await work
            return "done"
    except TimeoutError:
        return "deadline"


async def turns(n: int) -> None:
    """Work that takes `n` turns of the event loop and no timer: a task that is ready to run always runs
    before the timers that fell due meanwhile, so however slow the machine, it finishes before a deadline
    that had not passed when it started (a sleep would race the deadline's timer)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_request_past_its_deadline_is_cancelled_in_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.2)
    started = loop.time()
    outcome = await _request(deadlines, loop.create_future())  # never resolves by itself
    assert outcome == "deadline"
    assert 0.2 <= loop.time() - started < 0.2 + 2.0  # (a busy test machine may be late, never early)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "the cancel was taken back"


async def test_requests_in_time_are_untouched() -> None:
    deadlines = Deadlines(0.2)
    results = await asyncio.gather(*(_request(deadlines, turns(n % 5 + 1)) for n in range(50)))
    assert results == ["done"] * 50


async def test_another_cancellation_is_not_a_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(10)
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0.01)
    request.cancel()  # as a server shutting down does
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_only_the_overdue_request_of_many_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    short = Deadlines(0.1)
    hung = asyncio.create_task(_request(short, loop.create_future()))
    quick = [asyncio.create_task(_request(short, turns(n + 1))) for n in range(5)]
    assert await hung == "deadline"
    assert [await task for task in quick] == ["done"] * 5


async def test_a_stop_arriving_with_the_deadline_is_not_swallowed() -> None:
    """The server's cancel (it is stopping) and the deadline's land in the same loop turn: the task sees
    one CancelledError, which must go on up, not be answered as a timeout."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.0)  # due at once: the timer is a call_soon made as the request enters it
    entered: list[asyncio.Timeout] = []
    request = asyncio.create_task(_request(deadlines, loop.create_future(), entered))
    await asyncio.sleep(0)  # the request begins and waits
    request.cancel()  # the server stops, and before the request runs again its deadline passes
    with pytest.raises(asyncio.CancelledError):
        await request
    [timeout] = entered
    assert timeout.expired(), "the deadline did pass too"


async def test_the_deadline_alone_is_answered_as_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    request = asyncio.create_task(_request(Deadlines(0.0), loop.create_future()))
    assert await request == "deadline"
