"""Request deadlines (vmpoolerd/api/deadlines.py): one sweeping timer cancels what outlives its deadline."""

from __future__ import annotations

import asyncio

import pytest

from vmpoolerd.api.deadlines import Deadlines


async def _request(deadlines: Deadlines, work: asyncio.Future[None]) -> str:
    """What endpoint.py does around a handler."""
    task, cancels = deadlines.begin()
    expired = False
    try:
        try:
            await work
            return "done"
        finally:
            expired = deadlines.end(task, cancels)
    except asyncio.CancelledError:
        if not expired:
            raise
        return "deadline"


async def test_a_request_past_its_deadline_is_cancelled_within_a_tick() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.2, tick=0.05)
    started = loop.time()
    outcome = await _request(deadlines, loop.create_future())  # never resolves by itself
    assert outcome == "deadline"
    assert 0.2 <= loop.time() - started < 0.2 + 0.05 + 0.2  # (the last 0.2: a busy test machine)
    assert not deadlines._running and not deadlines._expired
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "the cancel was taken back"


async def test_requests_in_time_are_untouched_and_the_sweeper_stops_when_idle() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.2, tick=0.05)
    results = await asyncio.gather(*(_request(deadlines, asyncio.sleep(0.01)) for _ in range(50)))
    assert results == ["done"] * 50
    for _ in range(100):  # bounded: the sweeper notices within a tick that nothing runs
        if deadlines._sweeper is None:
            break
        await asyncio.sleep(0.01)
    assert deadlines._sweeper is None, "no timer left behind while idle"


async def test_another_cancellation_is_not_a_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 10, tick=0.05)
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0.01)
    request.cancel()  # as a server shutting down does
    with pytest.raises(asyncio.CancelledError):
        await request
    assert not deadlines._running and not deadlines._expired
    deadlines.close()


async def test_only_the_overdue_request_of_many_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    short = Deadlines(loop, 0.1, tick=0.02)
    hung = asyncio.create_task(_request(short, loop.create_future()))
    quick = [asyncio.create_task(_request(short, asyncio.sleep(0.01 * n))) for n in range(5)]
    assert await hung == "deadline"
    assert [await task for task in quick] == ["done"] * 5


async def test_a_stop_arriving_with_the_deadline_is_not_swallowed() -> None:
    """The server's cancel (it is stopping) and the deadline's land in the same loop turn: the task sees
    one CancelledError, which must go on up, not be answered as a timeout."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.0, tick=10)  # due at once; swept by hand below
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0)  # the request begins and waits
    request.cancel()  # the server stops...
    deadlines._sweep()  # ...and, before the request runs again, a sweep finds it overdue
    assert deadlines._expired
    with pytest.raises(asyncio.CancelledError):
        await request
    assert not deadlines._expired
    deadlines.close()


async def test_the_deadline_alone_is_answered_as_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.0, tick=10)
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0)
    deadlines._sweep()
    assert await request == "deadline"
    deadlines.close()
