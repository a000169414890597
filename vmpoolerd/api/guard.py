"""The one middleware: request size limits, trailing slashes, a JSON 500 for anything unexpected, and
(with Prometheus on) each request's latency by route.

A pure ASGI class rather than BaseHTTPMiddleware: it adds one call frame per request instead of a task
and a stream pair, which matters at a fraction of a millisecond per request. It sees the response's
status as it goes out (through `send`), and the route that answered from the scope's `route`, which
the route table sets as Starlette's own routes do (routing.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmpooler_core.errors import ErrorCode

from .errors import (
    MAX_BODY,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_URL,
    BodyTooLarge,
    body_too_large,
    error_response,
    server_error,
)

if TYPE_CHECKING:
    from vmpoolerd.prometheus import Registry

log = logging.getLogger("vmpooler.api")

# Paths that mean something different with their trailing slash.
_SLASH_PATHS = frozenset({"/", "/dashboard/"})


def _head(scope: Scope) -> tuple[int | None, bool, int]:
    """(Content-Length or None, chunked?, bytes of header names and values) from the request headers."""
    length: int | None = None
    chunked = False
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value)
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked, size


def _head_error(scope: Scope, header_bytes: int) -> JSONResponse | None:
    """414 or 431 for a request head over the limits (errors.py); None for any other. Under uvicorn the
    server has refused such a head already (http_limits.py); this covers any other ASGI server."""
    target = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
    if target > MAX_URL:
        return error_response(414, ErrorCode.URL_TOO_LONG, f"request URL over {MAX_URL} bytes")
    if len(scope["headers"]) > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES:
        return error_response(431, ErrorCode.HEADERS_TOO_LARGE,
                              f"more than {MAX_HEADERS} request headers, or over {MAX_HEADER_BYTES} bytes of them")
    return None


class Guard:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, prometheus: Registry | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.prometheus = prometheus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0  # none sent yet

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            if path.endswith("/") and path not in _SLASH_PATHS:
                # The original's routes all took an optional trailing slash (Sinatra's `/?`).
                scope["path"] = path.rstrip("/") or "/"
            length, chunked, header_bytes = _head(scope)
            refusal = _head_error(scope, header_bytes)
            if refusal is None and length is not None and length > self.max_body:
                refusal = body_too_large(self.max_body)
            if refusal is not None:
                await refusal(scope, receive, sending)
                return
            if chunked:
                # No length up front: count while the body streams in. (With a Content-Length the server
                # never hands the app more than that many bytes, so there is nothing to count.)
                receive = self._limited(receive)
            await self.app(scope, receive, sending)
        except BodyTooLarge:
            if not status:
                await body_too_large(self.max_body)(scope, receive, sending)
        except Exception:
            request_id = secrets.token_hex(8)
            log.exception("unexpected error [request %s] %s %s", request_id, scope.get("method"), path)
            if not status:
                await server_error(request_id)(scope, receive, sending)
        finally:
            if self.prometheus is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.prometheus.per_request.observe(scope["method"], template, status or 500,
                                                    time.perf_counter() - start)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        return limited_receive
