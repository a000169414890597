"""Manager processes for the tests that kill them: `vmpoolerd manager` on a config file, with a stable id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from tests.processes import terminate
from vmpooler_core.keys import Keys

REPO = Path(__file__).resolve().parents[2]


class ManagerProcess:
    def __init__(self, config: Path, manager_id: str, log: Path) -> None:
        self.config = config
        self.id = manager_id
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmpoolerd", "manager", "--config", str(self.config),
                 "--manager-id", self.id, "--log-level", "DEBUG"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as supervisord would; returns the exit code."""
        assert self.proc is not None
        return terminate(self.proc, timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ManagerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(condition: object, seconds: float, what: str, interval: float = 0.05) -> float:
    """Poll `condition()` until true; returns the seconds it took; fails after `seconds`."""
    assert callable(condition)
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what}: not reached within {seconds}s")
        time.sleep(interval)
    return time.monotonic() - started


class FillWatch:
    """Samples ready + pending of each pool in a thread for as long as it runs: the never-over-fill check.
    Both counts are read in one MULTI, so a VM moving pending -> ready is never counted twice."""

    def __init__(self, url: str, pools: Sequence[str]) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pools = list(pools)
        self.keys = Keys()
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pool in self.pools:
                pipe = self.client.pipeline(transaction=True)
                pipe.scard(self.keys.ready(pool))
                pipe.scard(self.keys.pending(pool))
                self.peak = max(self.peak, sum(pipe.execute()))
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> FillWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()
