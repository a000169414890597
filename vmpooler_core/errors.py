"""Exceptions shared by the core and both front ends.

Front ends map these to HTTP status codes and exit codes in one place each; the core never exits.
"""

from __future__ import annotations


class VmpoolerError(Exception):
    """Base class: every error the core raises on purpose."""


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


class NotFound(VmpoolerError):
    """A pool, alias, VM, token or snapshot does not exist."""

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        self.names = names
        super().__init__(message)


class NoCapacity(VmpoolerError):
    """A pool had too few ready VMs; nothing was taken."""

    def __init__(self, message: str, name: str) -> None:
        self.name = name
        super().__init__(message)


class Unauthorized(VmpoolerError):
    """A token or credentials are missing or wrong."""


class Conflict(VmpoolerError):
    """The VM is not in a state that allows the operation (e.g. returning a ready VM)."""


class BackendUnavailable(VmpoolerError):
    """Redis (or another backing service) cannot be reached."""


class RateLimited(VmpoolerError):
    """The client (its token, else its address) is over its request rate; nothing was done."""

    def __init__(self, limit: int, period: int, retry_after: int, reset: int) -> None:
        self.limit = limit
        self.period = period  # seconds
        self.retry_after = retry_after  # whole seconds until one more request is allowed
        self.reset = reset  # epoch seconds when the client's whole allowance is back
        super().__init__("rate limit exceeded")


class TooManyVms(VmpoolerError):
    """A checkout would take a token over its cap on VMs held at once; nothing was taken."""

    def __init__(self, held: int, cap: int) -> None:
        self.held = held
        self.cap = cap
        super().__init__(f"this token holds {held} VMs and may hold at most {cap} at once; "
                         "return some before checking out more")
