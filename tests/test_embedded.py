"""The embedded Redis of the default configuration: bundled binary, AOF persistence, stops with us, and
one owner per state directory (a second is refused; only the owner stops a server left by a dead one,
and only one it can tell was started for this directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from vmpooler_core import config_loader
from vmpoolerd.embedded import AlreadyRunning, EmbeddedRedis, demo_config_text, state_dir


def test_state_dir_follows_xdg(tmp_path: Path) -> None:
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "vmpooler"
    assert state_dir({"HOME": str(tmp_path)}) == tmp_path / ".local" / "state" / "vmpooler"


def test_data_survives_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "vmpooler").start()
    client = redis.Redis.from_url(server.url)
    client.sadd("vmpooler__running__pool", "vm1")
    client.close()
    server.stop()
    assert (tmp_path / "vmpooler" / "appendonlydir").is_dir()
    again = EmbeddedRedis(tmp_path / "vmpooler").start()
    client = redis.Redis.from_url(again.url, decode_responses=True)
    assert client.smembers("vmpooler__running__pool") == {"vm1"}
    client.close()
    again.stop()


def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from vmpoolerd.embedded import EmbeddedRedis; "
            "s = EmbeddedRedis(Path(sys.argv[1])).start(); print(s.proc.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "vmpooler")], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "embedded Redis outlived a kill -9 of vmpoolerd"
        time.sleep(0.05)
    again = EmbeddedRedis(tmp_path / "vmpooler").start()  # the lock died with its holder
    again.stop()


def test_demo_config_has_pools_with_aliases() -> None:
    cfg = config_loader.load(text=demo_config_text("unix:///tmp/x.sock"), env={})
    assert cfg.candidates("centos-6-64") == ("centos-6-x86_64",)
    assert all(p.provider == "dummy" for p in cfg.pools) and cfg.redis.url == "unix:///tmp/x.sock"


def test_a_second_owner_is_refused_and_the_first_server_is_left_alone(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "vmpooler").start("http://127.0.0.1:4567")
    assert first.proc is not None
    lock, pidfile = first.lock.path.read_text(), first.pidfile.read_text()
    with pytest.raises(AlreadyRunning) as refused:
        EmbeddedRedis(tmp_path / "vmpooler").start("http://127.0.0.1:5000")
    assert str(refused.value) == f"vmpoolerd is already running (pid {os.getpid()}, http://127.0.0.1:4567)"
    assert first.proc.poll() is None and first.lock.path.read_text() == lock and first.pidfile.read_text() == pidfile
    client = redis.Redis.from_url(first.url)
    assert client.ping()
    client.close()
    first.stop()


def test_the_owner_stops_a_server_left_by_a_dead_daemon_and_keeps_its_data(tmp_path: Path) -> None:
    # A server started for this directory whose daemon is gone (as if PR_SET_PDEATHSIG never fired).
    embedded = EmbeddedRedis(tmp_path / "vmpooler")
    embedded.dir.mkdir(parents=True)
    leftover = subprocess.Popen(embedded.command(), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (embedded.socket.exists() and embedded.pidfile.exists()):
            assert time.monotonic() < deadline and leftover.poll() is None, "the leftover server did not start"
            time.sleep(0.02)
        client = redis.Redis.from_url(embedded.url, decode_responses=True)
        client.sadd("vmpooler__running__pool", "vm1")
        client.close()

        embedded.start()
        assert embedded.proc is not None and embedded.proc.pid != leftover.pid
        assert leftover.wait(5) == 0  # SIGTERM: a clean stop, its AOF flushed
        client = redis.Redis.from_url(embedded.url, decode_responses=True)
        assert client.smembers("vmpooler__running__pool") == {"vm1"}
        client.close()
        embedded.stop()
    finally:
        leftover.kill()
        leftover.wait()


def test_a_stale_pid_file_never_stops_a_server_of_another_directory(tmp_path: Path) -> None:
    # Its pid file names the server of another state directory, whose path starts with this one's.
    other = EmbeddedRedis(tmp_path / "vmpooler" / "vmpooler").start()
    assert other.proc is not None
    here = EmbeddedRedis(tmp_path / "vmpooler")
    here.pidfile.write_text(f"{other.proc.pid}\n")
    here.start()
    assert other.proc.poll() is None, "the server of another state directory was stopped"
    here.stop()
    other.stop()


def test_a_stale_pid_file_never_stops_another_program(tmp_path: Path) -> None:
    here = EmbeddedRedis(tmp_path / "vmpooler")
    here.dir.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(here.socket)])
    try:
        here.pidfile.write_text(f"{bystander.pid}\n")
        here.start()
        assert bystander.poll() is None, "a process named in a stale pid file was signalled"
        here.stop()
    finally:
        bystander.kill()
        bystander.wait()
