"""Stopping the processes tests and benchmarks start (servers, daemons, simulators)."""

from __future__ import annotations

import subprocess
from typing import Any


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
