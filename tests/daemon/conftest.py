"""Fixtures for the daemon tests: `vmpoolerd` processes that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.daemon.procs import Daemon

StartDaemon = Callable[..., Daemon]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """`start_daemon(["api", "--config", path], env={...})` -> a started `Daemon` (the installed
    `vmpoolerd`, or `command`); every one started is killed at the end of the test if it is still running
    (a test stops them itself to check the exit)."""
    started: list[Daemon] = []

    def start(args: Sequence[str], env: Mapping[str, str] | None = None, port: int | None = None,
              command: Sequence[str] | None = None) -> Daemon:
        daemon = Daemon(tmp_path, args, env=env, port=port, command=command)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.cleanup()
