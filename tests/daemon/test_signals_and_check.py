"""SIGHUP reopens the log file (what logrotate needs), and `vmpoolerd --check`'s exit code is the health
verdict a probe can use: 1 without a fresh manager heartbeat or without Redis (in bounded time), 0 while
a daemon with a manager runs."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import K, check, wait_until, write_config
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port

POOL = "  - {name: pool1, size: 1}\n"


def open_files(pid: int) -> set[str]:
    """Paths of the files `pid` has open (what its file descriptors point at now, after any rename)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return found


def test_sighup_reopens_the_log_file(tmp_path: Path, redis_url: str, start_daemon: StartDaemon) -> None:
    logfile = tmp_path / "log" / "vmpoolerd.log"
    logfile.parent.mkdir()
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL, app=f"  logfile: '{logfile}'\n")
    daemon = start_daemon(["api", "--config", str(config), "--log-level", "info"]).wait_serving()
    assert "API listening on" in logfile.read_text()
    assert "API listening on" not in daemon.log()  # to the logfile, not to stderr as well

    rotated = logfile.with_name("vmpoolerd.log.1")  # logrotate's move, then its postrotate `kill -HUP`
    logfile.rename(rotated)
    assert str(rotated) in open_files(daemon.pid)  # still writing to the moved file
    daemon.send(signal.SIGHUP)
    wait_until(lambda: str(rotated) not in open_files(daemon.pid), 10, "the moved log file closed after SIGHUP")
    assert daemon.get("/api/v1/status").status_code == 200  # it carries on serving

    assert daemon.stop() == 0, daemon.log()  # the shutdown's lines go to a new file at the configured path
    new = logfile.read_text()
    assert "Shutting down" in new and "API listening on" not in new, new
    old = rotated.read_text()
    assert "API listening on" in old and "Shutting down" not in old, old
    assert " INFO " not in daemon.log()


def test_check_fails_without_a_manager_heartbeat(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL)
    code, verdict, _ = check(config, tmp_path)
    assert (code, verdict["ok"], verdict["redis"], verdict["reason"]) == (1, False, True, "no manager heartbeat")

    sync_redis.zadd(K.heartbeats(), {"gone-manager": time.time() - 120})  # a manager that died long ago
    code, verdict, _ = check(config, tmp_path)
    assert code == 1 and str(verdict["reason"]).startswith("last manager heartbeat"), verdict


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield int(server.getsockname()[1])


def test_check_fails_in_bounded_time_when_redis_is_down_or_hung(tmp_path: Path, silent_redis: int) -> None:
    down = write_config(tmp_path / "down.yaml", f"redis://127.0.0.1:{free_port()}/0", pools=POOL)
    code, verdict, took = check(down, tmp_path)
    assert (code, verdict["ok"], verdict["redis"]) == (1, False, False) and took < 10, (verdict, took)

    hung = tmp_path / "hung.yaml"
    hung.write_text(f"redis: {{url: 'redis://127.0.0.1:{silent_redis}/0', socket_timeout: 1}}\n"
                    f"providers: {{dummy: {{}}}}\npools:\n{POOL}")
    code, verdict, took = check(hung, tmp_path)
    assert (code, verdict["ok"], verdict["redis"]) == (1, False, False), verdict
    assert took < 1 + 6, took  # the configured socket timeout, plus the start of a Python process


def test_check_passes_while_a_daemon_runs_its_manager(tmp_path: Path, redis_url: str, sync_redis: redis.Redis,
                                                      start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL, app="  manager_loop_seconds: 0.2\n",
                          extra="providers:\n  dummy: {clone_time: 0, boot_time: 0}\n")
    daemon = start_daemon(["--config", str(config)]).wait_serving()
    wait_until(lambda: sync_redis.zcard(K.heartbeats()) >= 1, 20, "the manager's first heartbeat")
    code, verdict, _ = check(config, tmp_path)
    assert (code, verdict["ok"], verdict["managers"], verdict["reason"]) == (0, True, 1, "healthy"), verdict
    health = daemon.get("/healthcheck")
    assert health.status_code == 200 and health.json()["ok"] is True  # the same verdict over HTTP

    assert daemon.stop() == 0, daemon.log()
    code, verdict, _ = check(config, tmp_path)  # a manager that stopped cleanly has left: not counted
    assert (code, verdict["reason"]) == (1, "no manager heartbeat"), verdict


@pytest.mark.parametrize("role", ["api", "all", "manager"])
def test_a_durability_redis_cannot_honour_is_one_line_and_exit_78(tmp_path: Path, redis_url: str,
                                                                   sync_redis: redis.Redis, role: str,
                                                                   start_daemon: StartDaemon) -> None:
    """`durability: aof` on a Redis without WAITAOF (before 7.2) or without its AOF (the tests' has none):
    refused before any role starts, in one line naming the key, exit 78 (EX_CONFIG), nothing written.
    Before, uvicorn's start-up failed with a traceback and the daemon exited 69, after its manager had
    begun filling the pools; a manager alone was not refused at all."""
    sync_redis.flushall()
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools="  - {name: pool1, size: 1}\n")
    config.write_text(config.read_text().replace(f"redis: {{url: '{redis_url}'}}",
                                                 f"redis: {{url: '{redis_url}', durability: aof}}"))
    daemon = start_daemon([role, "--config", str(config)])
    wait_until(lambda: not daemon.running(), STARTUP_SECONDS, "vmpoolerd refused to start")
    assert daemon.proc is not None and daemon.proc.returncode == 78, daemon.log()
    errors = [line for line in daemon.log().splitlines() if line.startswith("vmpoolerd: error:")]
    assert len(errors) == 1 and "vmpooler.yaml: redis.durability: aof needs" in errors[0], daemon.log()
    assert "Traceback" not in daemon.log()
    assert sync_redis.dbsize() == 0, sync_redis.keys("*")
