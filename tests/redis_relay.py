"""A TCP relay in front of a Redis server that can hold a command back: a slow network made to order.

A test has Redis run a command after its sender gave up on it, as a busy Redis or a congested network
does, with no timing to race: `hold(marker)` holds the next data a client sends that contains `marker`
(and everything after it on that connection) until the test calls `release()`, which cuts the client's
side off (it gave up), sends the held bytes on to Redis and returns Redis's answer. Everything else
passes straight through.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class _Pipe:
    """One client connection and its own connection to Redis."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.held: bytearray | None = None  # not None once this connection's data is held back
        self.released = False
        self.answer = bytearray()
        self.answered = threading.Event()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""  # closed under us: as the end of the stream


class Relay:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._held: _Pipe | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Relay:
        self._thread(self._accept)
        return self

    def hold(self, marker: bytes) -> None:
        with self._lock:
            self._marker, self._held = marker, None

    def release(self, timeout: float = 5.0) -> bytes:
        """Cut the holding connection's client off, send what it held to Redis, and return Redis's answer
        (its first line at least)."""
        with self._lock:
            pipe = self._held
        assert pipe is not None and pipe.held is not None, "no command was held: the client never sent it"
        pipe.released = True
        pipe.client.shutdown(socket.SHUT_RDWR)
        pipe.upstream.sendall(bytes(pipe.held))
        assert pipe.answered.wait(timeout), "redis did not answer the released command"
        return bytes(pipe.answer)

    def stop(self) -> None:
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected (the listener), or already shut
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def _thread(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets += [client, upstream]
            pipe = _Pipe(client, upstream)
            self._thread(self._to_redis, pipe)
            self._thread(self._from_redis, pipe)

    def _to_redis(self, pipe: _Pipe) -> None:
        while data := _receive(pipe.client):
            with self._lock:
                if pipe.held is None and self._marker is not None and self._marker in data:
                    pipe.held, self._marker, self._held = bytearray(), None, pipe
                if pipe.held is not None:
                    pipe.held += data
                    continue
            pipe.upstream.sendall(data)
        if pipe.held is None:  # the client closed: so does its connection to Redis (a held one waits)
            try:
                pipe.upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already gone

    def _from_redis(self, pipe: _Pipe) -> None:
        while data := _receive(pipe.upstream):
            if pipe.released:
                pipe.answer += data
                if b"\r\n" in pipe.answer:
                    pipe.answered.set()
                continue
            try:
                pipe.client.sendall(data)
            except OSError:
                pass  # the client is gone; Redis's answer goes nowhere, as it would have
