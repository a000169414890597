"""Metrics: exactly one sink, chosen from the config (statsd wins over graphite; else none).

Names are the original's: `<prefix>.checkout.success.<pool>`, `checkout.empty.<name>`,
`checkout.invalid.<name>`, `ready.<pool>`, `running.<pool>`, `clone.<template>`, `destroy.<pool>`.
A dead or unreachable metrics server never raises into the caller and never blocks it: statsd is a
UDP datagram, and graphite lines go through a bounded queue to one background sender thread.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any, Protocol

from .config import MetricsSettings, SinkSettings

log = logging.getLogger("vmpooler.metrics")


class Metrics(Protocol):
    def increment(self, label: str, value: int = 1) -> None: ...
    def gauge(self, label: str, value: float) -> None: ...
    def timing(self, label: str, seconds: float) -> None: ...
    def close(self) -> None: ...


class NullMetrics:
    def increment(self, label: str, value: int = 1) -> None:
        pass

    def gauge(self, label: str, value: float) -> None:
        pass

    def timing(self, label: str, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


class StatsdMetrics:
    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self._client: object | None = None
        self._failed_at = 0.0

    def _statsd(self) -> Any:
        # Resolve lazily and retry at most once a minute, so a bad host name never stops start-up.
        if self._client is None and time.monotonic() - self._failed_at > 60:
            try:
                import statsd

                self._client = statsd.StatsClient(self.settings.server, self.settings.port,
                                                  prefix=self.settings.prefix)
            except (OSError, ValueError) as err:
                self._failed_at = time.monotonic()
                log.warning("statsd %s:%s unusable: %s", self.settings.server, self.settings.port, err)
        return self._client

    def _send(self, method: str, label: str, value: float) -> None:
        client = self._statsd()
        if client is None:
            return
        try:
            getattr(client, method)(label, value)
        except OSError as err:  # a datagram that cannot be sent is dropped, never raised
            log.debug("statsd send failed: %s", err)

    def increment(self, label: str, value: int = 1) -> None:
        self._send("incr", label, value)

    def gauge(self, label: str, value: float) -> None:
        self._send("gauge", label, value)

    def timing(self, label: str, seconds: float) -> None:
        self._send("timing", label, seconds * 1000.0)

    def close(self) -> None:
        pass


class GraphiteMetrics:
    """Plaintext protocol, `<prefix>.<label> <value> <epoch>`, over one reused TCP connection."""

    QUEUE_LIMIT = 10_000

    def __init__(self, settings: SinkSettings, timeout: float = 2.0, retry_seconds: float = 5.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._queue: queue.Queue[str | None] = queue.Queue(self.QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name="graphite-sender", daemon=True)
        self._thread.start()

    def _put(self, label: str, value: float) -> None:
        line = f"{self.settings.prefix}.{label} {value:g} {int(time.time())}\n"
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            pass  # the server is down and the backlog is full: drop rather than grow or block

    def increment(self, label: str, value: int = 1) -> None:
        self._put(label, value)

    def gauge(self, label: str, value: float) -> None:
        self._put(label, value)

    def timing(self, label: str, seconds: float) -> None:
        self._put(label, seconds)

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=self.timeout)
        except queue.Full:
            return
        self._thread.join(self.timeout)

    def _run(self) -> None:
        conn: socket.socket | None = None
        retry_at = 0.0  # while the server is down, lines are dropped until this moment
        while True:
            line = self._queue.get()
            if line is None:
                break
            if conn is None and time.monotonic() < retry_at:
                continue
            for _ in range(2):  # once on the open connection, once on a fresh one
                try:
                    if conn is None:
                        conn = socket.create_connection((self.settings.server, self.settings.port),
                                                        timeout=self.timeout)
                        if retry_at:
                            log.info("graphite %s:%s reachable again", self.settings.server,
                                     self.settings.port)
                        retry_at = 0.0
                    conn.sendall(line.encode())
                    break
                except OSError as err:
                    if conn is not None:
                        conn.close()
                    conn = None
                    if not retry_at:
                        log.warning("graphite %s:%s unreachable: %s", self.settings.server,
                                    self.settings.port, err)
                    retry_at = time.monotonic() + self.retry_seconds
        if conn is not None:
            conn.close()


def from_settings(settings: MetricsSettings) -> Metrics:
    if settings.statsd is not None:
        return StatsdMetrics(settings.statsd)
    if settings.graphite is not None:
        return GraphiteMetrics(settings.graphite)
    return NullMetrics()
