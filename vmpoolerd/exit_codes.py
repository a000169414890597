"""vmpoolerd's exit codes, named, so supervisors and scripts can tell failures apart."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # an unexpected failure (the traceback is shown with --debug)
    USAGE = 2  # bad command line (argparse's own code)
    # sysexits EX_UNAVAILABLE: cannot listen on the address, a role is not installed, or another vmpoolerd
    # already runs on the embedded defaults' state directory
    UNAVAILABLE = 69
    CONFIG = 78  # sysexits EX_CONFIG: the configuration is missing or invalid
    INTERRUPTED = 130  # Ctrl-C before start-up finished
