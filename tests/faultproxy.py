"""A fault-injecting HTTPS proxy for vCenter's SOAP API: what the network in front of a real vCenter does.

    with FaultProxy(sim.host, sim.port).start() as proxy:   # point the provider at proxy.port
        proxy.idle_close = 2.0                 # a server that drops connections idle for 2 s
        proxy.add(Fault("CloneVM_Task", "lose"))    # the clone is made, its answer never arrives
        proxy.add(Fault("Destroy_Task", "drop"))    # the request never reaches vCenter
        proxy.add(Fault(None, "stall", seconds=30)) # every answer held back
        proxy.refuse()  ...  proxy.accept()         # connection refused, then listening again
        proxy.cut()                                 # every open connection reset, as a restart does

It terminates TLS (a throwaway certificate: clients run with `insecure: true`) so that it sees each HTTP
request, and the SOAP method it carries, and opens one TLS connection to the real server per client
connection. Real sockets and threads, no mocks: the client sees exactly what a server or proxy would
make it see (a FIN on an idle connection, a reset after its request went out, a refused connect).

Actions of a `Fault`, applied to the next `count` requests for `method` (None: any request):

    lose     forward the request, read the answer, then reset the client's connection: the server did
             the work, the client never hears of it
    close    the same with a clean close (FIN) instead of a reset: "Remote end closed connection"
    drop     reset the client's connection without forwarding: the server never saw the request
    stall    forward, then hold the answer `seconds` before sending it (the client may time out first)
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal

from tests.tls_certs import make_tls_files

Action = Literal["lose", "close", "drop", "stall"]
_METHOD = re.compile(rb"<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Fault:
    method: str | None  # SOAP method ("CloneVM_Task"), or None for every request
    action: Action
    count: int = 1  # requests it applies to; 0: every one until removed
    seconds: float = 0.0  # for stall
    then: Callable[[], None] | None = None  # called once the fault has been applied (proxy.refuse, say)


def soap_method(body: bytes) -> str:
    found = _METHOD.search(body[:4096])
    return found.group(1).decode() if found else ""


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = self.socket.accept()
        wrapped = self.proxy.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away, or a connection this proxy cut on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.upstream: http.client.HTTPSConnection | None = None
        self.server.proxy.track(self.connection, True)

    def handle(self) -> None:
        """BaseHTTPRequestHandler's keep-alive loop, with a server's idle timeout between requests."""
        self.close_connection = True
        while self._request_arrives():
            self.handle_one_request()
            if self.close_connection:
                return

    def _request_arrives(self) -> bool:
        """Wait for the next request; False (after closing the connection as a server does, TLS
        close_notify then FIN) once it has been idle for the proxy's `idle_close`."""
        proxy = self.server.proxy
        idle_since = time.monotonic()
        while not proxy.stopped.is_set():
            if self.connection.pending() or select.select([self.connection], [], [], 0.05)[0]:
                return True
            if proxy.idle_close is not None and time.monotonic() - idle_since >= proxy.idle_close:
                try:
                    self.connection.settimeout(0.2)
                    self.connection.unwrap().close()
                except (OSError, ValueError):
                    pass  # close_notify went out; the client need not answer it
                return False
        return False

    def finish(self) -> None:
        self.server.proxy.track(self.connection, False)
        if self.upstream is not None:
            self.upstream.close()
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        method = soap_method(body) if body else f"{self.command} {self.path}"
        fault = proxy.take(method)
        if fault is not None and fault.action == "drop":
            self._abort(reset=True)
            return
        try:
            status, reason, headers, answer = self._ask(body)
        except (OSError, http.client.HTTPException):
            self._abort(reset=True)  # the server is gone: so is this connection
            return
        proxy.count(method)
        if fault is not None and fault.action in ("lose", "close"):
            if fault.then is not None:
                fault.then()  # before the client hears of the loss: it finds the proxy already changed
            self._abort(reset=fault.action == "lose")
            return
        if fault is not None and fault.action == "stall":
            proxy.stalling(fault.seconds)
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_HEADERS]
        lines.append(f"Content-Length: {len(answer)}")
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _ask(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        if self.upstream is None:
            self.upstream = http.client.HTTPSConnection(proxy.upstream[0], proxy.upstream[1], timeout=120,
                                                        context=proxy.client_tls)
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_HEADERS}
        self.upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = self.upstream.getresponse()
        return response.status, response.reason, response.getheaders(), response.read()

    def _abort(self, reset: bool) -> None:
        self.close_connection = True
        sock = self.connection
        if reset:
            _reset(sock)
        else:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class FaultProxy:
    def __init__(self, host: str, port: int, listen_port: int = 0) -> None:
        self.upstream = (host, port)
        self.idle_close: float | None = None  # seconds a connection may idle before this end closes it
        self._faults: list[Fault] = []
        self._calls: Counter[str] = Counter()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()
        self._listen_port = listen_port
        self._dir = tempfile.TemporaryDirectory(prefix="faultproxy-")
        files = make_tls_files(Path(self._dir.name))
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(files.server_cert, files.server_key)
        self.client_tls = ssl._create_unverified_context()  # the simulator's certificate is self-signed

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._listen_port

    # Lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self.accept()
        return self

    def accept(self) -> None:
        """Listen (again, on the same port after `refuse`)."""
        if self._server is not None:
            return
        self._server = _Server(("127.0.0.1", self._listen_port), self)
        self._listen_port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faultproxy", daemon=True)
        self._thread.start()

    def refuse(self, cut: bool = True) -> None:
        """Stop listening: connects are refused. With `cut`, the open connections are reset too."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if cut:
            self.cut()

    def cut(self) -> None:
        """Reset every open client connection (a server restart, a proxy failover)."""
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        self._released.set()
        self.refuse()
        self._dir.cleanup()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # Faults --------------------------------------------------------------------------------------

    def add(self, fault: Fault) -> None:
        self._released.clear()
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Remove every fault and release the answers being held."""
        with self._lock:
            self._faults.clear()
        self._released.set()

    def pending(self) -> list[Fault]:
        """The faults that have not yet been used up."""
        with self._lock:
            return list(self._faults)

    def take(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method is None or fault.method == method:
                    if fault.count:
                        fault.count -= 1
                        if not fault.count:
                            self._faults.remove(fault)
                    return fault
        return None

    def stalling(self, seconds: float) -> None:
        self._released.wait(seconds)

    # Book-keeping --------------------------------------------------------------------------------

    def count(self, method: str) -> None:
        with self._lock:
            self._calls[method] += 1

    def calls(self, method: str) -> int:
        """Requests for `method` that reached the server."""
        with self._lock:
            return self._calls[method]

    def track(self, sock: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def connections(self) -> int:
        with self._lock:
            return len(self._open)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll `condition()` until true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
