"""Turning `async def handler(request, services) -> Response` into a Starlette endpoint.

The wrapper gives every handler the same guarantees: a deadline (no client waits on a dead Redis
for longer than `services.deadline`: deadlines.py), expected errors answered as
JSON through errors.py, and, when rate limiting is on, the request counted against its client's limit
first (limits.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import errors
from .responses import JsonResponse
from .services import Services

Handler = Callable[[Request, Services], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

# Handlers whose one script also counts the request's rate limit (checkout, return): the wrapper must
# not count it a second time, in a second round trip.
_COUNTS_OWN_RATE: set[Handler] = set()


def counts_own_rate(handler: Handler) -> Handler:
    _COUNTS_OWN_RATE.add(handler)
    return handler


def ok(fields: Mapping[str, Any] | None = None, *, status: int = 200) -> JSONResponse:
    """`{"ok": true, ...}`: `ok` first, as the original writes it. (Fields are a mapping, not keyword
    arguments, because they are often keyed by host names, which can be any word.)"""
    return JsonResponse({"ok": True, **(fields or {})}, status_code=status)


def document(content: Any, status: int = 200) -> JSONResponse:
    return JsonResponse(content, status_code=status)


def endpoint(handler: Handler, rate_class: str | None = None) -> Endpoint:
    """`rate_class`: the route's rate-limit class (limits.rate_class), None when it is not limited."""
    counted_here = rate_class if handler not in _COUNTS_OWN_RATE else None

    async def run(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            # TimeoutError when the deadline passes (answered 503 below); a CancelledError (the server
            # stopping) goes on up.
            async with services.deadlines.limit():
                if counted_here is not None and services.limiter is not None:
                    await services.limiter.check(request, counted_here)
                return await handler(request, services)
        except Exception as exc:
            response = errors.from_exception(exc, services.outages)
            if response is None:
                raise  # a bug: the guard middleware logs it and answers 500 with a request id
            return response

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
