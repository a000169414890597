"""Every error the API answers, mapped to a status code and a JSON body in this one place.

Bodies are always `{"ok": false, "code": "...", "reason": "..."}` (the original's `{"ok": false}` plus a
machine-readable code, vmpooler_core.errors.ErrorCode, and a human reason), with
`Content-Type: application/json`: for the core's errors, for routing's 404/405 (routing.py), for bodies that are too
large, and for unexpected exceptions (500, with a request id that is also in the log).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import exceptions as redis_errors
from starlette.responses import JSONResponse

from vmpooler_core import redis_faults
from vmpooler_core.config import RedisSettings
from vmpooler_core.errors import (
    BackendUnavailable,
    Conflict,
    ErrorCode,
    InvalidRequest,
    NoCapacity,
    NotCheckedOut,
    NotFound,
    RateLimited,
    TooManyVms,
    Unauthorized,
    VmpoolerError,
)

from .responses import JsonResponse

log = logging.getLogger("vmpooler.api")

# The original's challenge, sent with every 401 so browsers and curl --anyauth know what to do.
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Authentication required"'}
MAX_BODY = 1 << 20  # 1 MiB
# The request head. Larger ones are answered before the app runs (guard.py; for uvicorn, already while
# the head is read: vmpoolerd/http_limits.py). Far above what any client of this API sends.
MAX_URL = 8 << 10  # path and query, bytes: 414 above
MAX_HEADERS = 100  # 431 above
MAX_HEADER_BYTES = 16 << 10  # names and values together: 431 above


class BodyTooLarge(Exception):
    """The request body passed MAX_BODY while it was being read (no Content-Length up front)."""


def error_response(status: int, code: ErrorCode, reason: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JsonResponse({"ok": False, "code": code.value, "reason": reason, **extra}, status_code=status,
                        headers=headers)


# The core's expected errors: (exception type, status code); each carries its own ErrorCode.
_STATUS: tuple[tuple[type[VmpoolerError], int], ...] = (
    (NotFound, 404),
    (InvalidRequest, 400),
    (NoCapacity, 503),
    (Unauthorized, 401),
    (NotCheckedOut, 404),  # the original's answer for returning a VM nobody holds
    (Conflict, 409),
    (BackendUnavailable, 503),
)


class OutageLog:
    """While Redis fails, one warning when the cause changes (unreachable, credentials refused, a missing
    ACL permission, ...: `redis_faults.Fault.kind`), and while it lasts a reminder every `every` seconds
    with the count of failures in between, rather than one per request: thousands a second would bury
    everything else in the log. `redis`: the settings the explanations name."""

    def __init__(self, every: float = 60.0, redis: RedisSettings | None = None) -> None:
        self.every = every
        self.redis = redis if redis is not None else RedisSettings()
        self.last = float("-inf")
        self.unreported = 0
        self.state: str | None = None

    def note(self, what: str, state: str | None = None) -> None:
        now = time.monotonic()
        state = what if state is None else state
        if state == self.state and now - self.last < self.every:
            self.unreported += 1
            return
        more = f" ({self.unreported} more failed requests since the last report)" if self.unreported else ""
        log.warning("redis unavailable: %s%s", what, more)
        self.last, self.unreported, self.state = now, 0, state


# A Redis outage or failover: worth retrying in a second (a Sentinel failover ends within about that).
RETRY_SOON = {"Retry-After": "1"}


def _retry(exc: VmpoolerError) -> dict[str, str] | None:
    """Retry-After for an error that says when to try again (the failover's, vmpooler_core.primary)."""
    after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(after)} if isinstance(exc, BackendUnavailable) and after is not None else None


def rate_limited(exc: RateLimited) -> JSONResponse:
    """429 in the original's shape (its headers, its body fields, with our `reason`)."""
    headers = {"Retry-After": str(exc.retry_after), "X-RateLimit-Limit": str(exc.limit),
               "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(exc.reset)}
    return error_response(429, exc.code, str(exc), headers, limit=exc.limit, period=exc.period,
                          retry_after=exc.retry_after)


def body_too_large(max_body: int = MAX_BODY) -> JSONResponse:
    return error_response(413, ErrorCode.BODY_TOO_LARGE, f"request body over {max_body} bytes", {"Connection": "close"})


def from_exception(exc: BaseException, outages: OutageLog) -> JSONResponse | None:
    """The response for an expected error; None for anything else (a bug: the caller answers 500)."""
    if isinstance(exc, RateLimited):
        return rate_limited(exc)
    if isinstance(exc, TooManyVms):
        # 403, not 429: waiting does not help, returning VMs does; and a client that retries every 429
        # by itself must not loop on this.
        return error_response(403, exc.code, str(exc), held=exc.held, limit=exc.cap)
    # A BackendUnavailable that Redis caused (NOREPLICAS under the failover code) is answered as that
    # Redis fault below: its reason names the setting, and the outage is logged once.
    if isinstance(exc, VmpoolerError) and not isinstance(exc.__cause__, redis_errors.RedisError):
        for kind, status in _STATUS:
            if isinstance(exc, kind):
                return error_response(status, exc.code, str(exc), AUTH_CHALLENGE if status == 401 else _retry(exc))
    if isinstance(exc, BodyTooLarge):
        return body_too_large()
    fault = redis_faults.explain(exc, outages.redis)
    if fault is not None:
        # Redis unreachable, or reachable and unwilling (credentials, ACL, READONLY, NOREPLICAS, OOM,
        # LOADING, BUSY, ...): not the request's fault, and the reason names the setting to fix.
        outages.note(fault.logged(), fault.kind)
        return error_response(503, ErrorCode.BACKEND_UNAVAILABLE, fault.reason, RETRY_SOON)
    if isinstance(exc, TimeoutError):
        # The request's deadline passed: Redis (or, for Basic credentials, LDAP) did not answer in time.
        outages.note("no answer before the request's deadline")
        return error_response(503, ErrorCode.BACKEND_UNAVAILABLE,
                              "a backend (redis or authentication) did not answer in time")
    return None


def server_error(request_id: str) -> JSONResponse:
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error; the server log has the details",
                          request_id=request_id)
