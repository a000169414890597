"""The embedded Redis of the default configuration: bundled binary, AOF persistence, stops with us."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from vmpooler_core import config_loader
from vmpoolerd.embedded import EmbeddedRedis, demo_config_text, state_dir


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


def test_demo_config_has_pools_with_aliases() -> None:
    cfg = config_loader.load(text=demo_config_text("unix:///tmp/x.sock"), env={})
    assert cfg.candidates("centos-6-64") == ("centos-6-x86_64",)
    assert all(p.provider == "dummy" for p in cfg.pools) and cfg.redis.url == "unix:///tmp/x.sock"
