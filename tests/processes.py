"""Stopping the processes tests and benchmarks start (servers, daemons, simulators)."""

from __future__ import annotations

import subprocess
from typing import Any

# How long a wait that includes a Python process's start-up (its imports) may take: about 2 s on a quiet
# machine, 10 s and more on a loaded one. A bound for waiting, never a claim on how fast anything is.
STARTUP_SECONDS = 60


def terminate(proc: subprocess.Popen[Any], grace: float = 10) -> int:
    """SIGTERM, as a supervisor would; SIGKILL if it still runs `grace` seconds later. The exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
