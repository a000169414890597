"""Metrics: what happened, as typed events, sent to exactly one sink chosen from the config (statsd wins
over graphite; else none).

Callers report events (`checkout`, `event`, `duration`, `pool_figure`); the names are made by the sinks.
The statsd and graphite sinks use the original's, `<prefix>.<label>` with labels `checkout.success.<pool>`,
`checkout.empty.<name>`, `checkout.invalid.<name>`, API v3's (`Event`: `ondemandrequest_generate.success`,
`config.invalid.<pool>`, ...), `ready.<pool>`, `running.<pool>`, `clone.<pool>`, `boot.<pool>`,
`destroy.<pool>` (and ours, `target.<pool>`); Prometheus (vmpoolerd/prometheus.py) its own.
A dead or unreachable metrics server never raises into the caller and never blocks it: statsd is a
UDP datagram, and graphite lines go through a bounded queue to one background sender thread.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Any, Protocol

from .config import MetricsSettings, SinkSettings

log = logging.getLogger("vmpooler.metrics")


class Outcome(StrEnum):
    """How a checkout ended."""

    SUCCESS = "success"  # one event per VM handed out, named by the pool that supplied it
    EMPTY = "empty"  # named by the requested name that found too few ready VMs
    INVALID = "invalid"  # one per unknown name; no name when none could be read
    RATELIMITED = "ratelimited"
    TOOMANY = "toomany"  # the token holds its cap of VMs

    def subject(self, name: str | None) -> str | None:
        """What the outcome is counted against: its name for success, empty and invalid ("unknown"
        for a request whose names could not be read, as the original counts it); nothing for the others."""
        if self in (Outcome.RATELIMITED, Outcome.TOOMANY):
            return None
        return name or "unknown"


class Phase(StrEnum):
    """Timed stages of a VM's life, each reported per pool by the manager."""

    CLONE = "clone"  # the provider's clone call
    BOOT = "boot"  # clone start to ready
    DESTROY = "destroy"  # the provider's destroy call


class Event(StrEnum):
    """Requests of API v3 counted as the original counts them; the value is its label. Those that name a
    pool (`named`) are counted per name: the pool or alias refused, "unknown" when there is none."""

    ONDEMAND_ACCEPTED = "ondemandrequest_generate.success"
    ONDEMAND_DUPLICATE = "ondemandrequest_generate.duplicaterequests"
    ONDEMAND_TOO_MANY = "ondemandrequest_fail.toomanyrequests"
    ONDEMAND_INVALID = "ondemandrequest_fail.invalid"
    CONFIG_INVALID = "config.invalid"  # the pool configuration API's changes
    POOLRESET_INVALID = "poolreset.invalid"

    @property
    def named(self) -> bool:
        return self not in (Event.ONDEMAND_ACCEPTED, Event.ONDEMAND_DUPLICATE)

    def label(self, name: str | None) -> str:
        return f"{self}.{name or 'unknown'}" if self.named else str(self)


class Figure(StrEnum):
    """Pool sizes the manager reports on each pass."""

    READY = "ready"
    RUNNING = "running"
    TARGET = "target"  # the size a pool sized to demand is kept at this pass (demand.py)


class Metrics(Protocol):
    def checkout(self, outcome: Outcome, name: str | None = None) -> None: ...
    def event(self, event: Event, name: str | None = None) -> None: ...
    def duration(self, phase: Phase, pool: str, seconds: float) -> None: ...
    def pool_figure(self, figure: Figure, pool: str, value: int) -> None: ...
    def close(self) -> None: ...


class NullMetrics:
    def checkout(self, outcome: Outcome, name: str | None = None) -> None:
        pass

    def event(self, event: Event, name: str | None = None) -> None:
        pass

    def duration(self, phase: Phase, pool: str, seconds: float) -> None:
        pass

    def pool_figure(self, figure: Figure, pool: str, value: int) -> None:
        pass

    def close(self) -> None:
        pass


class NamedSink(ABC):
    """A sink that names each event as the original did, `<label>` with a value of a statsd type: the one
    place those names are made. Statsd and graphite send them; tests may record them."""

    def checkout(self, outcome: Outcome, name: str | None = None) -> None:
        subject = outcome.subject(name)
        self.send_count(f"checkout.{outcome}" if subject is None else f"checkout.{outcome}.{subject}")

    def event(self, event: Event, name: str | None = None) -> None:
        self.send_count(event.label(name))

    def duration(self, phase: Phase, pool: str, seconds: float) -> None:
        self.send_timing(f"{phase}.{pool}", seconds)

    def pool_figure(self, figure: Figure, pool: str, value: int) -> None:
        self.send_gauge(f"{figure}.{pool}", value)

    @abstractmethod
    def send_count(self, label: str) -> None: ...

    @abstractmethod
    def send_gauge(self, label: str, value: float) -> None: ...

    @abstractmethod
    def send_timing(self, label: str, seconds: float) -> None: ...


class StatsdMetrics(NamedSink):
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

    def send_count(self, label: str) -> None:
        self._send("incr", label, 1)

    def send_gauge(self, label: str, value: float) -> None:
        self._send("gauge", label, value)

    def send_timing(self, label: str, seconds: float) -> None:
        self._send("timing", label, seconds * 1000.0)

    def close(self) -> None:
        pass


class GraphiteMetrics(NamedSink):
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

    def send_count(self, label: str) -> None:
        self._put(label, 1)

    def send_gauge(self, label: str, value: float) -> None:
        self._put(label, value)

    def send_timing(self, label: str, seconds: float) -> None:
        self._put(label, seconds)  # graphite takes seconds, as the original sent them

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
