"""Request deadlines (vmpoolerd/api/deadlines.py), over both implementations: one sweeping timer cancels
what outlives its deadline (SweptDeadlines, the fast path), or asyncio.timeout per request (the stock
path). Either way the request sees TimeoutError, and any other cancellation goes on up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from vmpooler_core.seams import Seams
from vmpoolerd.api.deadlines import Deadlines, SweptDeadlines, TimeoutDeadlines, make_deadlines

Make = Callable[[float, float], Deadlines]  # (seconds, tick) -> deadlines; a tick only for the sweeper


def _swept(seconds: float, tick: float) -> Deadlines:
    return SweptDeadlines(asyncio.get_running_loop(), seconds, tick)


def _stock(seconds: float, tick: float) -> Deadlines:
    return make_deadlines(asyncio.get_running_loop(), seconds, Seams.from_env({"VMPOOLER_STOCK": "deadlines"}))


@pytest.fixture(params=[_swept, _stock], ids=["swept", "stock"])
def make(request: pytest.FixtureRequest) -> Make:
    maker: Make = request.param
    return maker


async def _request(deadlines: Deadlines, work: Awaitable[None],
                   entered: list[AbstractAsyncContextManager[object]] | None = None) -> str:
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


def _expire(deadlines: Deadlines) -> None:
    """Make the deadlines of a zero-second `deadlines` pass now, in this loop turn."""
    if isinstance(deadlines, SweptDeadlines):
        deadlines._sweep()
    # asyncio.timeout(0) expires by itself: its timer is a call_soon made as the request entered it.


def test_the_seam_picks_the_sweeper_unless_the_stock_path_is_asked_for() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(make_deadlines(loop, 1.0, Seams()), SweptDeadlines)
        stock = make_deadlines(loop, 1.0, Seams.from_env({"VMPOOLER_STOCK": "all"}))
        assert isinstance(stock, TimeoutDeadlines) and stock.seconds == 1.0
    finally:
        loop.close()


async def test_a_request_past_its_deadline_is_cancelled_within_a_tick(make: Make) -> None:
    loop = asyncio.get_running_loop()
    deadlines = make(0.2, 0.05)
    started = loop.time()
    outcome = await _request(deadlines, loop.create_future())  # never resolves by itself
    assert outcome == "deadline"
    assert 0.2 <= loop.time() - started < 0.2 + 0.05 + 0.2  # (the last 0.2: a busy test machine)
    if isinstance(deadlines, SweptDeadlines):
        assert not deadlines._running and not deadlines._expired
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "the cancel was taken back"


async def test_requests_in_time_are_untouched_and_the_sweeper_stops_when_idle(make: Make) -> None:
    deadlines = make(0.2, 0.05)
    results = await asyncio.gather(*(_request(deadlines, asyncio.sleep(0.01)) for _ in range(50)))
    assert results == ["done"] * 50
    if isinstance(deadlines, SweptDeadlines):
        for _ in range(100):  # bounded: the sweeper notices within a tick that nothing runs
            if deadlines._sweeper is None:
                break
            await asyncio.sleep(0.01)
        assert deadlines._sweeper is None, "no timer left behind while idle"


async def test_another_cancellation_is_not_a_deadline(make: Make) -> None:
    loop = asyncio.get_running_loop()
    deadlines = make(10, 0.05)
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0.01)
    request.cancel()  # as a server shutting down does
    with pytest.raises(asyncio.CancelledError):
        await request
    if isinstance(deadlines, SweptDeadlines):
        assert not deadlines._running and not deadlines._expired
    deadlines.close()


async def test_only_the_overdue_request_of_many_is_cancelled(make: Make) -> None:
    loop = asyncio.get_running_loop()
    short = make(0.1, 0.02)
    hung = asyncio.create_task(_request(short, loop.create_future()))
    quick = [asyncio.create_task(_request(short, asyncio.sleep(0.01 * n))) for n in range(5)]
    assert await hung == "deadline"
    assert [await task for task in quick] == ["done"] * 5


async def test_a_stop_arriving_with_the_deadline_is_not_swallowed(make: Make) -> None:
    """The server's cancel (it is stopping) and the deadline's land in the same loop turn: the task sees
    one CancelledError, which must go on up, not be answered as a timeout."""
    loop = asyncio.get_running_loop()
    deadlines = make(0.0, 10)  # due at once; the sweeper's sweep is made by hand below
    entered: list[AbstractAsyncContextManager[object]] = []
    request = asyncio.create_task(_request(deadlines, loop.create_future(), entered))
    await asyncio.sleep(0)  # the request begins and waits
    request.cancel()  # the server stops...
    _expire(deadlines)  # ...and, before the request runs again, its deadline passes
    if isinstance(deadlines, SweptDeadlines):
        assert deadlines._expired
    with pytest.raises(asyncio.CancelledError):
        await request
    if isinstance(deadlines, SweptDeadlines):
        assert not deadlines._expired
    else:
        [timeout] = entered
        assert isinstance(timeout, asyncio.Timeout) and timeout.expired(), "the deadline did pass too"
    deadlines.close()


async def test_the_deadline_alone_is_answered_as_a_timeout(make: Make) -> None:
    loop = asyncio.get_running_loop()
    deadlines = make(0.0, 10)
    request = asyncio.create_task(_request(deadlines, loop.create_future()))
    await asyncio.sleep(0)
    _expire(deadlines)
    assert await request == "deadline"
    deadlines.close()
