"""examples/supervisord.conf, used as its comments say: copied next to a config, `supervisord -c` on it,
then `supervisorctl restart` and `stop`; the daemon serves, comes back with a new pid, and stops with
exit status 0."""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon.procs import REPO, alive, clean_env, console_script, wait_until, write_config
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port
from vmpoolerd import daemon

EXAMPLE = REPO / "examples" / "supervisord.conf"


class Supervisor:
    def __init__(self, here: Path, env: dict[str, str]) -> None:
        self.here = here
        self.conf = here / "supervisord.conf"
        self.env = env

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*console_script("supervisorctl"), "-c", str(self.conf), *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def status(self) -> tuple[str, int | None]:
        """(state, pid) of the vmpoolerd program, from `supervisorctl status`."""
        out = self.ctl("status", "vmpoolerd").stdout
        match = re.match(r"vmpoolerd\s+(\w+)\s*(?:pid (\d+))?", out)
        assert match, out
        return match.group(1), int(match.group(2)) if match.group(2) else None

    def pid(self) -> int | None:
        try:
            return int((self.here / "supervisord.pid").read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        path = self.here / "supervisord.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        """Shut supervisord down if it still runs (it stops its program); kill both if it will not go."""
        pid = self.pid()
        if pid is None or not alive(pid):
            return
        found = re.search(r"pid (\d+)", self.ctl("status", "vmpoolerd").stdout)
        program = int(found.group(1)) if found else None
        self.ctl("shutdown")
        try:
            wait_until(lambda: not alive(pid), 30, "supervisord shut down")
        finally:
            for stray in (pid, program):
                if stray is not None and alive(stray):
                    os.kill(stray, signal.SIGKILL)


# Where the example keeps its runtime files, which the tests move into a directory of their own.
RUNTIME_DIRS = ("/run/vmpooler", "/var/log/vmpooler")


@pytest.fixture
def supervisor(tmp_path: Path, redis_url: str) -> Iterator[tuple[Supervisor, str]]:
    """The example, copied into a directory of its own (its runtime directories too) next to a config for
    the test Redis on a free port; supervisord is shut down (and, failing that, killed with its program)
    at the end."""
    here = tmp_path / "sv"
    here.mkdir()
    text = EXAMPLE.read_text()
    for runtime in RUNTIME_DIRS:
        text = text.replace(runtime, str(here))
    (here / "supervisord.conf").write_text(text)
    port = free_port()
    config = write_config(here / "vmpooler.yaml", redis_url, app=f"  port: {port}\n",
                          pools="  - {name: pool1, size: 1}\n",
                          extra="providers:\n  dummy: {clone_time: 0, boot_time: 0}\n")
    sv = Supervisor(here, clean_env(tmp_path, VMPOOLER_CONFIG_FILE=str(config)))
    try:
        started = subprocess.run([*console_script("supervisord"), "-c", str(sv.conf)], env=sv.env,
                                 capture_output=True, text=True, timeout=30)
        assert started.returncode == 0, started.stderr
        yield sv, f"http://127.0.0.1:{port}"
    finally:
        sv.close()


def serves(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v1/status", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_supervisord_runs_restarts_and_stops_vmpoolerd(supervisor: tuple[Supervisor, str]) -> None:
    sv, url = supervisor
    wait_until(lambda: sv.status()[0] == "RUNNING", STARTUP_SECONDS, f"vmpoolerd RUNNING under supervisord\n{sv.log()}")
    wait_until(lambda: serves(url), STARTUP_SECONDS, "vmpoolerd serving under supervisord")
    first = sv.status()[1]
    assert first is not None

    restarted = sv.ctl("restart", "vmpoolerd")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    state, second = sv.status()
    assert state == "RUNNING" and second is not None and second != first
    assert not alive(first)  # the old process is gone, not left beside the new one
    wait_until(lambda: serves(url), STARTUP_SECONDS, "vmpoolerd serving again after the restart")

    stopped = sv.ctl("stop", "vmpoolerd")
    assert stopped.returncode == 0 and "vmpoolerd: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert sv.status()[0] == "STOPPED"
    assert not alive(second) and not serves(url)
    log = sv.log()
    # Both the restart and the stop were SIGTERM and a clean exit 0; it never exited on its own, and
    # supervisord never had to SIGKILL it.
    assert log.count("stopped: vmpoolerd (exit status 0)") == 2, log
    assert "exited: vmpoolerd" not in log and "SIGKILL" not in log, log
    pid = sv.pid()
    assert pid is not None
    shut = sv.ctl("shutdown")
    assert shut.returncode == 0, shut.stdout + shut.stderr
    wait_until(lambda: not alive(pid), 30, "supervisord shut down")


def test_the_examples_give_a_stop_the_time_the_daemon_may_take() -> None:
    """The daemon's longest stop (the API's grace, then the manager's) fits the stop timeouts of both
    examples, with room to spare: a stop is an exit 0, never a SIGKILL from the supervisor."""
    longest = daemon.API_STOP_GRACE + daemon.MANAGER_STOP_GRACE + 3  # + closing Redis, providers, logs
    supervisord = configparser.ConfigParser(interpolation=None)
    supervisord.read(EXAMPLE)
    program = supervisord["program:vmpoolerd"]
    assert program["stopsignal"] == "TERM" and int(program["stopwaitsecs"]) >= longest
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "examples" / "vmpoolerd.service")
    service = unit["Service"]
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= longest
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP: reopen the log file


def test_the_supervisord_example_keeps_its_runtime_files_out_of_the_repository() -> None:
    """Socket, pid file and logs at fixed runtime paths, none relative to the example (`%(here)s`): run
    from a checkout, supervisord would otherwise write them into the repository."""
    supervisord = configparser.ConfigParser(interpolation=None)
    supervisord.read(EXAMPLE)
    paths = [supervisord["unix_http_server"]["file"], supervisord["supervisord"]["logfile"],
             supervisord["supervisord"]["pidfile"], supervisord["supervisorctl"]["serverurl"].removeprefix("unix://"),
             supervisord["program:vmpoolerd"]["stdout_logfile"]]
    for path in paths:
        assert path.startswith(RUNTIME_DIRS) and "%(here)s" not in path, path
        assert not Path(path).is_relative_to(REPO), path
