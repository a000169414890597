"""End to end: the installed `vmpooler` console script against a live `vmpoolerd` process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.cli.conftest import POOLS_YAML, members, ready
from tests.processes import STARTUP_SECONDS, terminate
from tests.redis_server import free_port
from vmpooler_cli.exit_codes import ExitCode


def console_script(name: str) -> list[str] | None:
    """The installed entry point: beside this Python first (a venv's or pyenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    return [found] if found else None


@pytest.fixture
def vmpoolerd(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """`vmpoolerd api` on a free port, on the test Redis; its URL once it answers."""
    config = tmp_path / "vmpooler.yaml"
    config.write_text(POOLS_YAML)
    port = free_port()
    command = console_script("vmpoolerd") or [sys.executable, "-m", "vmpoolerd"]
    log = (tmp_path / "vmpoolerd.log").open("w")
    proc = subprocess.Popen([*command, "api", "--config", str(config), "--bind", "127.0.0.1", "--port", str(port)],
                            env={**os.environ, "VMPOOLER_REDIS_URL": redis_url}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, (tmp_path / "vmpoolerd.log").read_text()
            try:
                if httpx.get(url + "/api/v1/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"vmpoolerd did not answer within {STARTUP_SECONDS} s"
            time.sleep(0.05)
        yield url
    finally:
        terminate(proc, 10)
        log.close()


def test_installed_command_against_live_vmpoolerd(vmpoolerd: str, sync_redis: redis.Redis, tmp_path: Path) -> None:
    vmpooler = console_script("vmpooler")
    assert vmpooler, "the vmpooler console script is not installed: run `pip install -e .` (scripts/test does)"
    # Settings from the environment only, as a user's shell profile would give them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPOOLER_")}
    env.update(VMPOOLER_URL=vmpoolerd, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*vmpooler, *args], env=env, capture_output=True, text=True, timeout=30)

    ready(sync_redis, "pool1", "vm1", "vm2")
    got = run("checkout", "poolone", "-n", "2", "--json")
    assert got.returncode == 0, got.stderr
    hosts = sorted(vm["fqdn"] for vm in json.loads(got.stdout)["vms"])
    assert hosts == ["vm1.company.com", "vm2.company.com"]
    assert members(sync_redis, "running", "pool1") == {"vm1", "vm2"}

    assert run("tag", "vm1", "owner=jdoe").returncode == 0
    shown = run("show", "vm1.company.com")
    assert shown.returncode == 0 and "owner=jdoe" in shown.stdout and "running" in shown.stdout
    pools = json.loads(run("pools", "--json").stdout)["pools"]
    assert [(p["name"], p["ready"], p["running"]) for p in pools] == [("pool1", 0, 2), ("pool2", 0, 0)]

    empty = run("checkout", "pool1")
    assert (empty.returncode, empty.stdout) == (ExitCode.NO_CAPACITY, "")
    assert empty.stderr.startswith("vmpooler: error: ")

    back = run("return", *hosts)
    assert back.returncode == 0, back.stderr
    assert members(sync_redis, "completed", "pool1") == {"vm1", "vm2"}
    assert run("return", "vm1").returncode == ExitCode.NOT_FOUND
