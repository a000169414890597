"""The dashboard in a real browser: Debian's headless Chromium loads /dashboard/ from a live daemon, runs
its script (which polls /api/v1/status), and the DOM it leaves has one row per pool with the counts that
are in Redis; a screenshot of it is a real, non-blank picture."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, clean_env, fill, write_config

# pool -> (size, ready, pending, running): every pool different, one empty, one with nothing at all.
POOLS = {
    "centos-6-x86_64": (5, 3, 1, 2),
    "debian-7-x86_64": (3, 0, 2, 1),
    "ubuntu-2204-x86_64": (10, 7, 0, 4),
    "win-2012r2-x86_64": (2, 0, 0, 0),
}
ALIASES = {"centos-6-x86_64": ["centos-6-64", "centos-6-amd64"], "ubuntu-2204-x86_64": ["ubuntu"]}
WINDOW = (1280, 900)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]


def chromium(tmp: Path, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium with a throwaway profile; its stdout. Killed with all its helper processes
    if it outlives `timeout`."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed: run scripts/test, which installs it"
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            env=clean_env(tmp, HOME=str(tmp / "home")), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # any helper process it left behind
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


class Rows(HTMLParser):
    """The pool table of the dumped DOM: pool -> {cell class: text}; plus the <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.body: dict[str, str | None] = {}
        self._pool: str | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        elif tag == "tr" and (pool := attributes.get("data-pool")):
            assert pool not in self.rows, f"pool {pool} rendered twice"
            self._pool = pool
            self.rows[pool] = {}
        elif tag == "td" and self._pool is not None:
            self._cell = attributes.get("class") or ""
            self.rows[self._pool][self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._pool = None

    def handle_data(self, data: str) -> None:
        if self._pool is not None and self._cell is not None:
            self.rows[self._pool][self._cell] += data


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.fixture
def dashboard(tmp_path: Path, redis_url: str, sync_redis: redis.Redis, start_daemon: StartDaemon) -> Daemon:
    pools = ""
    for name, (size, *counts) in POOLS.items():
        alias = f", alias: [{', '.join(ALIASES[name])}]" if name in ALIASES else ""
        pools += f"  - {{name: {name}, size: {size}{alias}}}\n"
        for state, count in zip(("ready", "pending", "running"), counts, strict=True):
            fill(sync_redis, state, name, [f"{name[:6]}-{state}-{i}" for i in range(count)])
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=pools, app="  site_name: 'Pool <b>test</b>'\n")
    return start_daemon(["api", "--config", str(config)]).wait_serving()


def test_dashboard_renders_every_pool_with_its_counts_in_chromium(tmp_path: Path, dashboard: Daemon) -> None:
    dom = chromium(tmp_path, "--dump-dom", dashboard.url + "/dashboard/")
    page = Rows()
    page.feed(dom)
    assert page.body.get("data-loaded") == "true", dom  # the script ran and drew a status it fetched
    assert list(page.rows) == sorted(POOLS)
    for name, (size, ready, pending, running) in POOLS.items():
        row = page.rows[name]
        assert row["name"] == name
        assert (row["ready"], row["max"], row["pending"], row["running"]) == (
            str(ready), str(size), str(pending), str(running)), (name, row)
        assert row["aliases"] == ", ".join(ALIASES.get(name, []))
    assert "10 of 20 VMs ready (50%)" in dom and "Found 2 empty pools." in dom
    assert "cannot reach the API" not in dom

    shot = tmp_path / "dashboard.png"
    chromium(tmp_path, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", dashboard.url + "/dashboard/")
    data = shot.read_bytes()
    width, height, distinct = png_facts(data)
    assert (width, height) == WINDOW
    assert len(data) > 10_000 and distinct > 32, (len(data), distinct)  # a drawn page, not a blank one
