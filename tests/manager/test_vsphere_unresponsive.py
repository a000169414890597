"""A vCenter that accepts connections and never answers (hung, or stopped as the soak run stops the
simulator): every vSphere call must fail within the provider's `timeout`, not hang, and the daemon must
still stop on SIGTERM.

pyvmomi's SmartConnect fetches the server's version list over a connection without a timeout; before the
login was bounded (vsphere_session.Session._connect), the first call hung until the server answered, every
other call of the provider queued behind it, and `vmpoolerd` ignored SIGTERM for as long.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port
from vmpooler_core.provider import ProviderUnavailable
from vmpoolerd.providers.vsphere import VsphereProvider

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2  # the provider's `timeout`, seconds


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever reads or answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield server.getsockname()[1]


def vsphere_yaml(port: int, redis_url: str = "") -> str:
    return "\n".join([
        f"redis: {{url: '{redis_url}'}}" if redis_url else "",
        "config: {manager_loop_seconds: 0.2, manager_lease_seconds: 3, manager_backoff_max: 1}",
        "providers:",
        f"  vsphere: {{server: 127.0.0.1, port: {port}, username: u, password: p, insecure: true, "
        f"timeout: {TIMEOUT}, ready_check: none}}",
        "pools:",
        "  - {name: pool1, size: 1, template: t, folder: vmpooler/pool1, provider: vsphere}", ""])


def test_calls_fail_within_the_timeout_and_close_does_not_wait(silent_server: int) -> None:
    config = make_config(vsphere_yaml(silent_server))
    provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
    outcomes: dict[int, tuple[float, BaseException | None]] = {}

    def call(index: int) -> None:
        started = time.monotonic()
        try:
            provider.list_vms("pool1", "vmpooler/pool1")
            outcomes[index] = (time.monotonic() - started, None)
        except Exception as err:  # the outcome is checked below
            outcomes[index] = (time.monotonic() - started, err)

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 5)
    assert len(outcomes) == 4, "a call is still blocked on the silent vCenter"
    for took, error in outcomes.values():
        assert isinstance(error, ProviderUnavailable) and took < TIMEOUT + 2, (took, error)
    # One login attempt for all four callers, not one stuck thread per call.
    assert sum(t.name == "vsphere vsphere login" for t in threading.enumerate()) == 1
    started = time.monotonic()
    provider.close()
    assert time.monotonic() - started < 1


@pytest.mark.slow
def test_daemon_backs_off_and_stops_on_sigterm(silent_server: int, tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(vsphere_yaml(silent_server, redis_url))
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "all", "--config", str(config),
                                 "--port", str(free_port())], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "provider vsphere unavailable" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
