"""Errors of the front end, and the one place that maps every error to an exit code and a message."""

from __future__ import annotations

from .exit_codes import ExitCode


class CliError(Exception):
    """An error the command reports as one line on stderr with a chosen exit code."""

    code = ExitCode.ERROR

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class Unreachable(CliError):
    """The API server or Redis did not connect or did not answer within the timeout."""

    code = ExitCode.UNREACHABLE


def classify(err: BaseException) -> tuple[ExitCode, str]:
    """(exit code, one-line message) for any exception a command can raise."""
    # Imported here, not at the top: `vmpooler --help` must not pay for the core's imports.
    from vmpooler_core import errors as core

    if isinstance(err, CliError):
        return err.code, str(err)
    table: tuple[tuple[type[BaseException], ExitCode], ...] = (
        # A VM that exists but is not checked out is "not found" for `return`, as the API's 404 says.
        (core.NotFound, ExitCode.NOT_FOUND),
        (core.Conflict, ExitCode.NOT_FOUND),
        (core.NoCapacity, ExitCode.NO_CAPACITY),
        (core.RateLimited, ExitCode.LIMITED),
        (core.TooManyVms, ExitCode.LIMITED),
        (core.Unauthorized, ExitCode.UNAUTHORIZED),
        (core.InvalidRequest, ExitCode.USAGE),
        (core.BackendUnavailable, ExitCode.UNREACHABLE),
        (core.VmpoolerError, ExitCode.ERROR),
    )
    for kind, code in table:
        if isinstance(err, kind):
            return code, str(err)
    return ExitCode.ERROR, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
