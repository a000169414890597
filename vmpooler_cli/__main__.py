"""Entry point of the `vmpooler` console script and of `python -m vmpooler_cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see vmpooler_cli.exit_codes)."""
    from .app import cli

    return int(cli.main(args=list(argv) if argv is not None else None, prog_name="vmpooler",
                        standalone_mode=False))


if __name__ == "__main__":
    sys.exit(main())
