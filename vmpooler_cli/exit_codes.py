"""The `vmpooler` command's exit codes: one name per outcome, so scripts can branch on them.

0 ok, 1 error, 2 usage, 3 not found, 4 no capacity, 5 unauthorized, 6 unreachable, 7 limited,
130 interrupted;
MEANING below says what each covers, and `vmpooler --help` shows that table. The mapping from
exceptions to these codes is in one place: vmpooler_cli.errors.classify.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # click's own code for usage errors, so both kinds agree
    NOT_FOUND = 3
    NO_CAPACITY = 4
    UNAUTHORIZED = 5
    UNREACHABLE = 6
    LIMITED = 7
    INTERRUPTED = 130


MEANING = {
    ExitCode.OK: "done",
    ExitCode.ERROR: "anything else (a bad config file, an unexpected answer)",
    ExitCode.USAGE: "bad command line, or a request the server rejected as invalid",
    ExitCode.NOT_FOUND: "no such pool, alias, VM, token or snapshot; or the VM is not checked out",
    ExitCode.NO_CAPACITY: "too few ready VMs: nothing was checked out",
    ExitCode.UNAUTHORIZED: "token or credentials missing or wrong",
    ExitCode.UNREACHABLE: "the server or Redis did not connect or answer in time",
    ExitCode.LIMITED: "over a rate limit (try again later) or the token's cap on VMs held (return some)",
    ExitCode.INTERRUPTED: "stopped with Ctrl-C",
}

# Shown at the end of `vmpooler --help`; built from the enum so the two cannot drift apart.
HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code.value:<4} {code.name.lower().replace('_', ' ')}: {MEANING[code]}" for code in ExitCode
)
