"""On a real terminal (tmux): `vmpooler watch` updates in place as the pools change, shows an outage in
place and keeps trying, and stops on Ctrl-C; tables are drawn by rich, in colour unless NO_COLOR is set;
checkout names each host's pool."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import POOLS_YAML, K, live_api, ready
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port

Tmux = Callable[..., str]
REPO = Path(__file__).resolve().parents[2]  # so `-m vmpooler_cli` finds this checkout


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    """tmux on a private server socket (-L), killed afterwards; returns a `tmux(*args)` runner."""
    binary = shutil.which("tmux")
    assert binary, "tmux is not installed: scripts/test installs it (apt-get install tmux)"
    socket_name = f"vmpooler-test-{os.getpid()}-{tmp_path.name}"

    def run(*args: str) -> str:
        return subprocess.run([binary, "-L", socket_name, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    yield run
    subprocess.run([binary, "-L", socket_name, "kill-server"], capture_output=True, timeout=10)


def start(tmux: Tmux, args: list[str], env: dict[str, str]) -> None:
    """Run `vmpooler ARGS` in a 110x30 window; the shell reports its exit code as EXIT=<n>."""
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"env {variables} {shlex.quote(sys.executable)} -m vmpooler_cli {shlex.join(args)}"
    shell = f"bash -c {shlex.quote(command + '; echo EXIT=$?; sleep 60')}"
    tmux("new-session", "-d", "-s", "t", "-x", "110", "-y", "30", shell)


def wait_for(tmux: Tmux, found: Callable[[str], bool], what: str, escapes: bool = False) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS  # the first screen waits for the command's start-up
    while True:
        screen = tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "t")
        if found(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}; the screen was:\n{screen}")
        time.sleep(0.05)


def cells(screen: str, pool: str) -> list[str]:
    """A pool's cells in rich's table, `│ pool1 │ poolone │ 2 │ ...` -> ["pool1", "poolone", "2", ...]."""
    for line in screen.splitlines():
        parts = [part.strip() for part in line.split("│")]
        if len(parts) >= 8 and parts[1] == pool:
            return parts[1:7]
    return []


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(POOLS_YAML)
    return {"VMPOOLER_REDIS_URL": redis_url, "VMPOOLER_CONFIG": str(config), "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}


def test_watch_follows_the_pools_until_ctrl_c(tmux: Tmux, env: dict[str, str], sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1", "a2")
    start(tmux, ["watch", "--interval", "0.2"], env)
    screen = wait_for(tmux, lambda s: cells(s, "pool1")[:3] == ["pool1", "poolone", "2"], "pool1 with 2 ready")
    assert "Every 0.2s" in screen and "Ctrl-C" in screen
    assert cells(screen, "pool2") == ["pool2", "", "0", "0", "0", "10"]

    # The pools change under it (as the manager and other users would change them).
    ready(sync_redis, "pool1", "a3")
    sync_redis.sadd(K.pending("pool2"), "p1")
    sync_redis.sadd(K.running("pool2"), "r1", "r2")
    screen = wait_for(tmux, lambda s: cells(s, "pool2") == ["pool2", "", "0", "1", "2", "10"], "pool2 updated")
    assert cells(screen, "pool1") == ["pool1", "poolone", "3", "0", "0", "5"]
    # Updated in place: one table on the screen, not one per refresh.
    assert screen.count("pool1") == 1

    tmux("send-keys", "-t", "t", "C-c")
    wait_for(tmux, lambda s: "EXIT=130" in s, "exit code 130 after Ctrl-C")


@pytest.mark.parametrize("no_color", [False, True])
def test_pools_table_colours_and_no_color(tmux: Tmux, env: dict[str, str], sync_redis: redis.Redis,
                                          no_color: bool) -> None:
    ready(sync_redis, "pool1", "a1")
    start(tmux, ["pools"], {**env, **({"NO_COLOR": "1"} if no_color else {})})
    screen = wait_for(tmux, lambda s: "EXIT=0" in s, "the table", escapes=True)
    assert "┏" in screen or "━" in screen  # rich's box, only on a terminal
    green, red = "\x1b[32m", "\x1b[31m"  # ready in green; a pool that should have VMs and has none in red
    if no_color:
        assert green not in screen and red not in screen
    else:
        assert green in screen and red in screen


def test_checkout_on_a_terminal_names_each_hosts_pool(tmux: Tmux, env: dict[str, str],
                                                       sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1", "a2")
    ready(sync_redis, "pool2", "b1")
    start(tmux, ["checkout", "poolone=2", "pool2"], env)
    screen = wait_for(tmux, lambda s: "EXIT=" in s, "the checkout's end")
    assert "EXIT=0" in screen
    lines = [line.split() for line in screen.splitlines() if ".company.com" in line]
    assert sorted(lines) == [["a1.company.com", "(pool1)"], ["a2.company.com", "(pool1)"],
                             ["b1.company.com", "(pool2)"]]


def test_watch_shows_an_outage_in_place_and_keeps_trying(tmux: Tmux, env: dict[str, str],
                                                         redis_url: str) -> None:
    port = free_port()
    start(tmux, ["--api", f"http://127.0.0.1:{port}", "watch", "--interval", "0.2"], env)
    screen = wait_for(tmux, lambda s: "cannot reach" in s, "the outage")
    assert "trying again every 0.2s" in " ".join(screen.split())  # however rich wrapped the line
    server = live_api(POOLS_YAML, redis_url, port)
    try:
        screen = wait_for(tmux, lambda s: cells(s, "pool1")[:1] == ["pool1"] and "cannot reach" not in s,
                          "the table once the server answers")
        assert screen.count("Every 0.2s") == 1  # the same screen, updated in place
    finally:
        server.stop()
    screen = wait_for(tmux, lambda s: "cannot reach" in s, "the outage again")
    assert cells(screen, "pool1")[:1] == ["pool1"] and "showing the last figures" in " ".join(screen.split())
    tmux("send-keys", "-t", "t", "C-c")
    wait_for(tmux, lambda s: "EXIT=130" in s, "exit code 130 after Ctrl-C")
