"""Debian's headless Chromium for the dashboard tests: one launch loads a page, lets its script run (in
virtual time: its timers fire, its fetches are real), and gives back the DOM it left, what it wrote to
the console (uncaught errors included) and a screenshot."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tests.daemon.procs import clean_env

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000", "--hide-scrollbars",
                  # The page's console messages (and uncaught errors) go to stderr as "...:CONSOLE..." lines.
                  "--enable-logging=stderr", "--v=0"]


@dataclass(frozen=True)
class Loaded:
    dom: str
    console: list[str]  # every console message and uncaught error of the page
    png: bytes  # b"" when no screenshot was asked for


def chromium(tmp: Path, *args: str, timeout: float = 60) -> tuple[str, str]:
    """Run headless Chromium with a throwaway profile; its stdout and stderr. Killed with all its helper
    processes if it outlives `timeout`."""
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
    return out, err


def load(tmp: Path, url: str, window: tuple[int, int] | None = None) -> Loaded:
    """The page at `url` once its script has run; with `window`, a screenshot of that size too."""
    shot = tmp / f"shot-{len(list(tmp.glob('shot-*')))}.png"
    extra = [f"--window-size={window[0]},{window[1]}", f"--screenshot={shot}"] if window else []
    out, err = chromium(tmp, *extra, "--dump-dom", url)
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    return Loaded(out, console, shot.read_bytes() if window else b"")


def keep_screenshot(png: bytes, name: str) -> None:
    """With DASHBOARD_SCREENSHOTS=<directory> set, keep a copy of a screenshot there: how the README's
    pictures, docs/dashboard-*.png, are made (then made small: `pngquant --strip --quality 70-90`)."""
    directory = os.environ.get("DASHBOARD_SCREENSHOTS")
    if directory:
        Path(directory, name).write_bytes(png)


class Rows(HTMLParser):
    """The pool table of the dumped DOM: pool -> {cell class: text}, in order, plus each row's chart's
    `points` (the buckets it drew a ready value for) and `target` (those it drew a target for, when it
    drew one); the <body> attributes; the text of each element
    with a `data-provider` or `data-platform` attribute; and the reason rows' texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.body: dict[str, str | None] = {}
        self.providers: dict[str, str] = {}
        self.platforms: dict[str, str] = {}
        self.platform_lines: dict[str, str] = {}
        self.reasons: list[str] = []
        self._pool: str | None = None
        self._cell: str | None = None
        self._reason = False
        self._named: tuple[dict[str, str], str] | None = None
        self._platform: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        elif tag == "tr" and (pool := attributes.get("data-pool")):
            assert pool not in self.rows, f"pool {pool} rendered twice"
            self._pool = pool
            self.rows[pool] = {}
        elif tag == "tr" and attributes.get("class") == "reason":
            self._reason = True
            self.reasons.append("")
        elif tag == "td" and self._pool is not None:
            self._cell = attributes.get("class") or ""
            self.rows[self._pool][self._cell] = ""
        elif tag == "svg" and self._pool is not None:
            self.rows[self._pool]["points"] = attributes.get("data-points") or ""
        elif tag == "path" and self._pool is not None and attributes.get("class") == "target":
            self.rows[self._pool]["target"] = str((attributes.get("d") or "").count("L") // 2)  # buckets drawn
        elif provider := attributes.get("data-provider"):
            self.providers[provider] = ""
            self._named = (self.providers, provider)
        elif platform := attributes.get("data-platform"):
            self._platform = platform
            self.platforms[platform] = ""
        elif tag == "span" and self._platform is not None and attributes.get("class") == "running":
            self._named = (self.platforms, self._platform)
        elif tag == "path" and self._platform is not None:
            self.platform_lines[self._platform] = attributes.get("d") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._pool = None
            self._reason = False
        elif tag == "span":
            self._named = None
        elif tag == "div":
            self._platform = None

    def handle_data(self, data: str) -> None:
        if self._pool is not None and self._cell is not None:
            self.rows[self._pool][self._cell] += data
        elif self._reason:
            self.reasons[-1] += data
        elif self._named is not None:
            found, name = self._named
            found[name] += data


def parse(dom: str) -> Rows:
    page = Rows()
    page.feed(dom)
    return page


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
