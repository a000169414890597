"""One daemon per state directory on the embedded defaults. A second `vmpoolerd` started while one runs
(on the same port or another) says who runs there and exits at once, touching nothing: the first one's
server, pid file, socket and data stay as they were and it keeps serving. Daemons on different state
directories run side by side, and a daemon killed with -9 leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, alive, clean_env, console_script, wait_until
from tests.daemon.test_embedded_default import centos_ready, embedded_server_pid
from tests.redis_server import free_port
from vmpoolerd.exit_codes import ExitCode


def startup_seconds(tmp_path: Path) -> float:
    """How long this machine takes to start `vmpoolerd` at all (`--version` imports everything main()
    does): the part of a refusal's time that is not the refusal."""
    began = time.monotonic()
    subprocess.run([*console_script("vmpoolerd"), "--version"], capture_output=True, check=True, timeout=30,
                   env=clean_env(tmp_path))
    return time.monotonic() - began


def files_of(state: Path) -> dict[str, tuple[int, str] | None]:
    """What a second daemon must leave alone: the lock, the server's pid file and socket (by inode and
    content: a rewrite or a new socket changes them)."""
    directory = state / "vmpooler"
    seen: dict[str, tuple[int, str] | None] = {}
    for name in ("vmpoolerd.lock", "redis.pid", "redis.sock"):
        path = directory / name
        seen[name] = (path.stat().st_ino, "" if path.is_socket() else path.read_text()) if path.exists() else None
    return seen


def checkout_answers(daemon: Daemon) -> None:
    wait_until(lambda: centos_ready(daemon), 30, "a ready VM in the demo pool centos-6-x86_64")
    taken = httpx.post(daemon.url + "/api/v1/vm/centos-6-x86_64", timeout=5)
    assert taken.status_code == 200 and taken.json()["ok"] is True, taken.text


@pytest.mark.parametrize("port", ["same", "other"])
def test_a_second_daemon_on_the_same_state_directory_refuses_at_once_and_touches_nothing(
        tmp_path: Path, start_daemon: StartDaemon, port: str) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    first = start_daemon([], env=env).wait_serving()
    server = embedded_server_pid(tmp_path / "state")
    before = files_of(tmp_path / "state")

    second_port = first.port if port == "same" else free_port()
    began = time.monotonic()
    second = subprocess.run([*console_script("vmpoolerd"), "--port", str(second_port)], capture_output=True,
                            text=True, timeout=30, env=clean_env(tmp_path, **env))
    took = time.monotonic() - began

    assert second.returncode == ExitCode.UNAVAILABLE, second.stderr
    assert second.stderr.splitlines() == [f"vmpoolerd is already running (pid {first.pid}, {first.url})"]
    assert second.stdout == ""
    baseline = startup_seconds(tmp_path)
    assert took < baseline + 1, f"the refusal took {took:.2f} s; starting vmpoolerd at all takes {baseline:.2f} s"

    assert alive(server) and embedded_server_pid(tmp_path / "state") == server
    assert files_of(tmp_path / "state") == before
    assert first.running(), first.log()
    assert first.get("/api/v1/status").status_code == 200
    checkout_answers(first)
    assert first.stop() == 0, first.log()


def test_daemons_on_different_state_directories_both_run(tmp_path: Path, start_daemon: StartDaemon) -> None:
    one = start_daemon([], env={"XDG_STATE_HOME": str(tmp_path / "one")}).wait_serving()
    two = start_daemon([], env={"XDG_STATE_HOME": str(tmp_path / "two")}).wait_serving()
    assert embedded_server_pid(tmp_path / "one") != embedded_server_pid(tmp_path / "two")
    checkout_answers(one)
    checkout_answers(two)
    assert one.stop() == 0, one.log()
    assert two.stop() == 0, two.log()


def test_a_daemon_killed_with_9_leaves_no_lock_behind(tmp_path: Path, start_daemon: StartDaemon) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    first = start_daemon([], env=env).wait_serving()
    wait_until(lambda: centos_ready(first), 30, "a ready VM in the demo pool centos-6-x86_64")
    host = httpx.post(first.url + "/api/v1/vm/centos-6-x86_64", timeout=5).json()["centos-6-x86_64"]["hostname"]
    server = embedded_server_pid(tmp_path / "state")
    os.kill(first.pid, signal.SIGKILL)
    assert first.proc is not None and first.proc.wait(10) == -signal.SIGKILL

    again = start_daemon([], env=env, port=first.port).wait_serving()
    assert "already running" not in again.log()
    wait_until(lambda: not alive(server), 10, "the killed daemon's valkey-server gone")
    assert embedded_server_pid(tmp_path / "state") != server
    vm = again.get(f"/api/v1/vm/{host}")  # the checkout made before the kill is still recorded
    assert vm.status_code == 200 and vm.json()[host]["state"] == "running", vm.text
    assert again.stop() == 0, again.log()
