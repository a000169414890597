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
