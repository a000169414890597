"""Prometheus metrics: `/metrics` in the text exposition format.

Two kinds of figures:
- pool gauges (ready, pending, running, completed, size) are read from Redis when scraped, so every
  API process reports the same truth whichever process did the work;
- events (checkouts by outcome, clone, boot and destroy durations, API latency by route) are counted by
  the process they happen in; scrape every process, as with any multi-process service.

Events arrive through the same `Metrics` calls that feed statsd or graphite (`Tee` sends each call to
both), so the core needs no Prometheus knowledge.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import Metrics

_VM_SECONDS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_API_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class Registry:
    """One process's Prometheus metrics; built once and passed in (no global default registry)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.pool = Gauge("vmpooler_pool_vms", "VMs in a pool by state (read from Redis at scrape)",
                          ["pool", "state"], registry=r)
        self.size = Gauge("vmpooler_pool_size", "Configured size of a pool", ["pool"], registry=r)
        self.checkouts = Counter("vmpooler_checkouts", "Checkout outcomes per pool or requested name",
                                 ["outcome", "pool"], registry=r)
        self.clone = Histogram("vmpooler_clone_seconds", "Time to clone a VM", ["pool"], buckets=_VM_SECONDS,
                               registry=r)
        self.boot = Histogram("vmpooler_boot_seconds", "Time from clone start to ready", ["pool"],
                              buckets=_VM_SECONDS, registry=r)
        self.destroy = Histogram("vmpooler_destroy_seconds", "Time to destroy a VM", ["pool"],
                                 buckets=_VM_SECONDS, registry=r)
        self.api = Histogram("vmpooler_api_request_seconds", "API latency by route", ["method", "route", "status"],
                             buckets=_API_SECONDS, registry=r)

    async def render(self, config: Config, inventory: Inventory) -> bytes:
        names = [pool.name for pool in config.pools]
        counts = await inventory.counts(names)
        for pool in config.pools:
            self.size.labels(pool.name).set(pool.size)
            for state, value in counts[pool.name].items():
                self.pool.labels(pool.name, state).set(value)
        return generate_latest(self.registry)


class Tee:
    """A `Metrics` that forwards every call to the configured sink and records it for Prometheus."""

    def __init__(self, inner: Metrics, prom: Registry) -> None:
        self.inner = inner
        self.prom = prom

    def increment(self, label: str, value: int = 1) -> None:
        self.inner.increment(label, value)
        kind, _, rest = label.partition(".")
        if kind == "checkout":
            outcome, _, name = rest.partition(".")
            self.prom.checkouts.labels(outcome, name).inc(value)

    def gauge(self, label: str, value: float) -> None:
        self.inner.gauge(label, value)  # pool gauges are read from Redis at scrape time instead

    def timing(self, label: str, seconds: float) -> None:
        self.inner.timing(label, seconds)
        kind, _, pool = label.partition(".")
        histogram = {"clone": self.prom.clone, "boot": self.prom.boot, "destroy": self.prom.destroy}.get(kind)
        if histogram is not None:
            histogram.labels(pool).observe(seconds)

    def close(self) -> None:
        self.inner.close()


class LatencyMiddleware:
    """Pure ASGI (no per-request task or body copy): times each HTTP request by its route template, so
    `/api/v1/vm/abc` and `/api/v1/vm/def` share one series."""

    def __init__(self, app: ASGIApp, prom: Registry) -> None:
        self.app = app
        self.prom = prom

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            template = scope.get("vmpooler.template", "unmatched")  # set by the route table
            self.prom.api.labels(scope.get("method", ""), template, str(status)).observe(time.perf_counter() - start)
