"""Errors of the front end, and the one place that maps every error to an exit code and a message."""

from __future__ import annotations

from .exit_codes import ExitCode


class CliError(Exception):
    """An error the command reports as one line on stderr with a chosen exit code. `kind` is the word
    `--json` reports as its `code` (the server's error code when it sent one); default: the exit code's name."""

    code = ExitCode.ERROR

    def __init__(self, message: str, code: ExitCode | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.kind = kind


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


def error_word(err: BaseException, code: ExitCode) -> str:
    """The `code` of `--json`'s error object: the core's error code (the API's word for the same error,
    e.g. "unknown_pool"), else the exit code's name ("usage", "unreachable", ...)."""
    from vmpooler_core.errors import ErrorCode, VmpoolerError

    if isinstance(err, CliError) and err.kind:
        return err.kind
    if isinstance(err, VmpoolerError) and err.code is not ErrorCode.INTERNAL_ERROR:
        return str(err.code)
    return code.name.lower()
