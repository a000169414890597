"""The one middleware: request size limits, trailing slashes, a JSON 500 for anything unexpected, each
request's id, the access log (when `config: access_log` is on) and (with Prometheus on) each request's
latency by route.

Every request gets an id: the client's `X-Request-Id` when it is sane (audit.REQUEST_ID_RE: bounded, no
character that could break a log line), else a new one. It is sent back in the response's `X-Request-Id`,
named by the audit log's lines for the request (`caller()`), by its access log line and by a 500's body.

A pure ASGI class rather than BaseHTTPMiddleware: it adds one call frame per request instead of a task
and a stream pair, which matters at a fraction of a millisecond per request. It sees the response's
status as it goes out (through `send`), and the route that answered from the scope's `route`, which
the route table sets as Starlette's own routes do (routing.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmpooler_core import logsafe
from vmpooler_core.audit import REQUEST_ID_RE, Caller, new_request_id
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
access = logging.getLogger("vmpooler.access")

# Paths that mean something different with their trailing slash.
_SLASH_PATHS = frozenset({"/", "/dashboard/"})
# Where the request's id and the header naming its client's address are kept in the scope, for the
# handlers (`caller`).
_REQUEST_ID = "vmpooler.request_id"
_ADDRESS_HEADER = "vmpooler.address_header"


def _head(scope: Scope) -> tuple[int | None, bool, int, str | None]:
    """(Content-Length or None, chunked?, bytes of header names and values, the X-Request-Id sent if it
    is sane) from the request headers."""
    length: int | None = None
    chunked = False
    size = 0
    request_id = None
    for name, value in scope["headers"]:
        size += len(name) + len(value)
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"x-request-id":
            sent = value.decode("latin-1")
            request_id = sent if REQUEST_ID_RE.fullmatch(sent) else None
    return length, chunked, size, request_id


def client_address(scope: Scope, header: bytes | None) -> str:
    """The client's address: the last entry of `header` when one is configured (a trusted proxy's, as
    `rate_limits: address_header`), else the peer's."""
    if header is not None:
        for name, value in scope["headers"]:
            if name == header:
                return value.decode("latin-1").rsplit(",", 1)[-1].strip()[:64] or "unknown"
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def caller(request: Request) -> Caller:
    """Who sent the request, for the core's audit lines: its address and its id."""
    scope = request.scope
    return Caller(client_address(scope, scope.get(_ADDRESS_HEADER)), scope.get(_REQUEST_ID, "-"))


def _logged_path(scope: Scope, path: str) -> str:
    """The path for the access log as the client sent it (still percent-encoded; what a server lets
    through unencoded, e.g. bytes above 127, is escaped by logsafe); a token in it (`/token/<token>`) is
    never written."""
    raw: bytes | None = scope.get("raw_path")
    sent = raw.decode("latin-1") if raw else path
    token = scope.get("path_params", {}).get("token")
    return sent.replace(token, "***") if token else sent


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
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, prometheus: Registry | None = None,
                 access_log: bool = False, address_header: str | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.prometheus = prometheus
        self.access_log = access_log
        self.address_header = address_header.lower().encode("latin-1") if address_header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0  # none sent yet
        length, chunked, header_bytes, sent_id = _head(scope)
        request_id = sent_id or new_request_id()
        scope[_REQUEST_ID] = request_id
        scope[_ADDRESS_HEADER] = self.address_header
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        path: str = scope["path"]
        try:
            if path.endswith("/") and path not in _SLASH_PATHS:
                # The original's routes all took an optional trailing slash (Sinatra's `/?`).
                scope["path"] = path.rstrip("/") or "/"
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
            log.exception("unexpected error [request %s] %s %s", request_id, logsafe.text(scope.get("method")),
                          logsafe.text(path))
            if not status:
                await server_error(request_id)(scope, receive, sending)
        finally:
            self._done(scope, path, status, time.perf_counter() - start, request_id)

    def _done(self, scope: Scope, path: str, status: int, seconds: float, request_id: str) -> None:
        if self.prometheus is not None:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.prometheus.per_request.observe(scope["method"], template, status or 500, seconds)
        if self.access_log:
            # A request cut off before its answer (the client went away) is logged with status 0.
            access.info("%s %s %d %.1fms client=%s request=%s", logsafe.text(scope["method"]),
                        logsafe.text(_logged_path(scope, path)), status, seconds * 1000,
                        logsafe.quoted(client_address(scope, self.address_header)), request_id)

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
