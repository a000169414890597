"""Exceptions shared by the core and both front ends.

Front ends map these to HTTP status codes and exit codes in one place each; the core never exits.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """The machine-readable `code` of every error the API answers (beside its human `reason`), so that
    clients branch on a word rather than on a status code that means several things (a 503 is "no
    capacity" or "Redis is down") or on the reason's wording. The CLI maps these to its exit codes."""

    INVALID_REQUEST = "invalid_request"  # 400: malformed body, counts, dates, tags
    BAD_HTTP = "bad_http"  # 400: not HTTP/1.1 at all
    UNAUTHORIZED = "unauthorized"  # 401: credentials or token missing or wrong
    TOO_MANY_VMS = "too_many_vms"  # 403: the token's cap on VMs held
    TOO_MANY_INSTANCES = "too_many_instances"  # 403: an on-demand request over max_ondemand_instances_per_request
    UNKNOWN_POOL = "unknown_pool"  # 404: a checkout names a pool or alias the server does not have
    NOT_FOUND = "not_found"  # 404: no such VM, token, snapshot or summary
    NOT_CHECKED_OUT = "not_checked_out"  # 404 (the original's code): returning a VM nobody holds
    NOT_CONFIGURED = "not_configured"  # 404: the feature (authentication, metrics) is off here
    NO_SUCH_ROUTE = "no_such_route"  # 404: this server has no such path
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    CONFLICT = "conflict"  # 409
    BODY_TOO_LARGE = "body_too_large"  # 413
    URL_TOO_LONG = "url_too_long"  # 414
    REQUEST_TIMEOUT = "request_timeout"  # 408: the request's head or body did not arrive in time
    RATE_LIMITED = "rate_limited"  # 429
    TOO_MANY_CONNECTIONS = "too_many_connections"  # 429 (from one address) or 503 (in all): nothing read
    HEADERS_TOO_LARGE = "headers_too_large"  # 431
    INTERNAL_ERROR = "internal_error"  # 500, with a request id that is also in the log
    NO_CAPACITY = "no_capacity"  # 503: too few ready VMs; nothing was taken
    UNHEALTHY = "unhealthy"  # 503 from /healthcheck: no manager is keeping the pools filled
    BACKEND_UNAVAILABLE = "backend_unavailable"  # 503: Redis (or the directory) did not answer in time
    DIRECTORY_UNAVAILABLE = "directory_unavailable"  # 503: no LDAP host could judge the credentials


class VmpoolerError(Exception):
    """Base class: every error the core raises on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR


class ConfigError(VmpoolerError):
    """The configuration is invalid; names the file, line and key when known."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.reason = message
        self.source = source
        self.line = line
        self.key = key
        where = source or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)


class InvalidRequest(VmpoolerError):
    """A request is malformed: bad counts, bad names, too many VMs."""

    code = ErrorCode.INVALID_REQUEST


class NotFound(VmpoolerError):
    """A VM, token, snapshot or summary does not exist."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        self.names = names
        super().__init__(message)


class UnknownPool(NotFound):
    """A checkout names pools or aliases (`names`) the configuration does not have; nothing was taken."""

    code = ErrorCode.UNKNOWN_POOL


class NotConfigured(NotFound):
    """A feature that is off on this server (authentication: the original answers 404 for it too)."""

    code = ErrorCode.NOT_CONFIGURED


class NoCapacity(VmpoolerError):
    """A pool had too few ready VMs; nothing was taken."""

    code = ErrorCode.NO_CAPACITY

    def __init__(self, message: str, name: str) -> None:
        self.name = name
        super().__init__(message)


class Unauthorized(VmpoolerError):
    """A token or credentials are missing or wrong."""

    code = ErrorCode.UNAUTHORIZED


class Conflict(VmpoolerError):
    """The VM is not in a state that allows the operation."""

    code = ErrorCode.CONFLICT


class NotCheckedOut(Conflict):
    """Returning a VM that exists but is not checked out (ready, already returned)."""

    code = ErrorCode.NOT_CHECKED_OUT


class BackendUnavailable(VmpoolerError):
    """Redis (or another backing service) cannot be reached."""

    code = ErrorCode.BACKEND_UNAVAILABLE


class DirectoryUnavailable(BackendUnavailable):
    """No LDAP host could say whether the credentials are right (unreachable, no answer in time, TLS
    refused or not trusted): the user is told so, not that the password is wrong."""

    code = ErrorCode.DIRECTORY_UNAVAILABLE


class RateLimited(VmpoolerError):
    """The client (its token, else its address) is over its request rate; nothing was done."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, limit: int, period: int, retry_after: int, reset: int,
                 reason: str = "rate limit exceeded") -> None:
        self.limit = limit
        self.period = period  # seconds
        self.retry_after = retry_after  # whole seconds until one more request is allowed
        self.reset = reset  # epoch seconds when the client's whole allowance is back
        super().__init__(reason)


class TooManyVms(VmpoolerError):
    """A checkout would take a token over its cap on VMs held at once; nothing was taken."""

    code = ErrorCode.TOO_MANY_VMS

    def __init__(self, held: int, cap: int) -> None:
        self.held = held
        self.cap = cap
        super().__init__(f"this token holds {held} VMs and may hold at most {cap} at once; "
                         "return some before checking out more")
