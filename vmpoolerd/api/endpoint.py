"""Turning `async def handler(request, services) -> Response` into the endpoint a route calls.

The wrapper gives every handler the same guarantees: a deadline (no client waits on a dead Redis
for longer than `services.deadline`, and a request answered 503 for it changed nothing: deadlines.py),
expected errors answered as JSON through errors.py,
and, for a rate-limited route whose handler does not count its own rate, the request counted against its
client's limit first (limits.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from . import errors
from .limits import RateClass
from .responses import JsonResponse
from .services import Services

Handler = Callable[[Request, Services], Awaitable[Response]]
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
Endpoint = Callable[[Request], Awaitable[Response]]


def ok(fields: Mapping[str, Any] | None = None, *, status: int = 200) -> JSONResponse:
    """`{"ok": true, ...}`: `ok` first, as the original writes it. (Fields are a mapping, not keyword
    arguments, because they are often keyed by host names, which can be any word.)"""
    return JsonResponse({"ok": True, **(fields or {})}, status_code=status)


def document(content: Any, status: int = 200) -> JSONResponse:
    return JsonResponse(content, status_code=status)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any((name == b"content-length" and value != b"0") or name == b"transfer-encoding"
               for name, value in headers)


def endpoint(handler: Handler, count_rate: RateClass | None = None) -> Endpoint:
    """`count_rate`: the rate class to count the request against before the handler runs; None when
    the route is not limited or its handler counts the rate itself."""

    async def run(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            if request.method in _WITH_BODY and _has_body(request.scope["headers"]):
                # Read before the deadline starts: how long a client takes to send its body is the HTTP
                # server's to limit (http: body_timeout), not a backend that did not answer in time.
                await request.body()
            # TimeoutError when the deadline passes (answered 503 below); a CancelledError (the server
            # stopping) goes on up.
            async with services.deadlines.limit() as limit:
                # The request's changes (its scripts) refuse, inside Redis, to run after the deadline: an
                # answer of 503 means nothing was done.
                with services.deadlines.changes(limit):
                    if count_rate is not None and services.limiter is not None:
                        await services.limiter.check(request, count_rate)
                    return await handler(request, services)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody to answer: the client left (or was cut off) mid-body
        except Exception as exc:
            response = errors.from_exception(exc, services.outages)
            if response is None:
                raise  # a bug: the guard middleware logs it and answers 500 with a request id
            return response

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
