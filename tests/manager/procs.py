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
from typing import Self

import redis

from tests.processes import terminate
from vmpooler_core.keys import Keys

REPO = Path(__file__).resolve().parents[2]


def process_config(redis_url: str, pools: Sequence[str], dummy: str, *, size: int = 4, task_limit: int = 3) -> str:
    """The configuration of manager processes: short passes and leases, the dummy provider with `dummy`'s
    options (YAML lines), `pools` of `size` VMs each."""
    body = "".join(f"  - name: {pool}\n    size: {size}\n" for pool in pools)
    return f"""
:redis:
  url: {redis_url}
:config:
  task_limit: {task_limit}
  vm_checktime: 0
  manager_lease_seconds: 2
  manager_loop_seconds: 0.2
  manager_backoff_max: 0.5
:providers:
  :dummy:
    {dummy}
:pools:
{body}"""


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


class _Watch:
    """A thread that samples Redis (`_sample`) for as long as it runs."""

    def __init__(self, url: str, pools: Sequence[str]) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pools = list(pools)
        self.keys = Keys()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.005)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


class FillWatch(_Watch):
    """Samples ready + pending of each pool in a thread for as long as it runs: the never-over-fill check.
    Both counts are read in one MULTI, so a VM moving pending -> ready is never counted twice."""

    def __init__(self, url: str, pools: Sequence[str]) -> None:
        super().__init__(url, pools)
        self.samples = 0

    def _sample(self) -> None:
        for pool in self.pools:
            pipe = self.client.pipeline(transaction=True)
            pipe.scard(self.keys.ready(pool))
            pipe.scard(self.keys.pending(pool))
            self.peak = max(self.peak, sum(pipe.execute()))
        self.samples += 1


class CloneWatch(_Watch):
    """Samples the clones in flight across every manager: VMs pending in Redis that the dummy provider has
    not made yet (its clone records the VM at its end). VMs recorded by the managers in `dead` are left
    out: their clones died with them, and their pending entries wait for a pass. `peak` is the most seen
    at once; `cloners` the managers whose clones were seen."""

    def __init__(self, url: str, pools: Sequence[str], dead: Sequence[str] = ()) -> None:
        super().__init__(url, pools)
        self.dead = set(dead)
        self.cloners: set[str] = set()
        self._owner: dict[str, str] = {}  # host -> the manager that recorded it (never changes)

    def _sample(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        for pool in self.pools:
            pipe.smembers(self.keys.pending(pool))
            pipe.hkeys(self.keys.dummy_folder("dummy", pool))
        found = pipe.execute()
        pairs = zip(found[::2], found[1::2], strict=True)
        cloning: set[str] = set().union(*(set(pending) - set(made) for pending, made in pairs))
        for host in cloning - set(self._owner):
            self._owner[host] = str(self.client.hget(self.keys.vm(host), "cloned_by") or "")
        live = {host for host in cloning if self._owner[host] not in self.dead}
        self.cloners |= {self._owner[host] for host in live}
        self.peak = max(self.peak, len(live))
