"""Prometheus metrics: `/metrics` in the text exposition format.

Two kinds of figures:
- pool gauges (ready, pending, running, completed, size; a pool sized to demand's target and forecast
  demand) are read from Redis when scraped, so every API process reports the same truth whichever
  process did the work;
- events (checkouts by outcome, clone, boot and destroy durations, API latency by route) are counted by
  the process they happen in; scrape every process, as with any multi-process service.

Events arrive as the same typed `Metrics` events that feed statsd or graphite (`Tee` sends each one to
both), so the core needs no Prometheus knowledge and no name is parsed here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vmpooler_core import pool_settings
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import Event, Figure, Metrics, Outcome, Phase
from vmpooler_core.status import targets

_VM_SECONDS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_API_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)



class _PerRequest(Collector):
    """The figures every API request updates (its latency; a checkout's outcome), kept in plain dicts and
    lists. prometheus_client's Counter and Histogram take a lock per update and per bucket, a few µs a
    request; these are only ever updated and scraped from the API's one event loop, which needs none."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.edges = [*(floatToGoString(bound) for bound in buckets), "+Inf"]  # type: ignore[no-untyped-call]
        self.latency: dict[tuple[str, str, str], list[float]] = {}  # labels -> per-bucket counts, then sum
        self.checkouts: dict[tuple[str, str], float] = {}
        self.events: dict[tuple[str, str], float] = {}  # (the original's label, pool or name) -> count

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        series = self.latency.get(key)
        if series is None:
            series = self.latency[key] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, seconds)] += 1  # the last bucket is +Inf
        series[-1] += seconds

    def count_checkout(self, outcome: str, name: str) -> None:
        key = (outcome, name)
        self.checkouts[key] = self.checkouts.get(key, 0.0) + 1

    def count_event(self, event: Event, name: str | None) -> None:
        key = (str(event), (name or "unknown") if event.named else "")
        self.events[key] = self.events.get(key, 0.0) + 1

    def collect(self) -> Iterator[Metric]:
        checkouts = CounterMetricFamily("vmpooler_checkouts", "Checkout outcomes per pool or requested name",
                                        labels=["outcome", "pool"])
        for outcome_pool, value in self.checkouts.items():
            checkouts.add_metric(list(outcome_pool), value)
        yield checkouts
        events = CounterMetricFamily("vmpooler_api_events", "API v3's on-demand requests and refused pool "
                                     "configuration changes, by the original's label", labels=["event", "pool"])
        for event_pool, value in self.events.items():
            events.add_metric(list(event_pool), value)
        yield events
        latency = HistogramMetricFamily("vmpooler_api_request_seconds", "API latency by route",
                                        labels=["method", "route", "status"])
        for labels, series in self.latency.items():
            cumulative, buckets = 0.0, []
            for edge, count in zip(self.edges, series, strict=False):
                cumulative += count
                buckets.append((edge, cumulative))
            latency.add_metric(list(labels), buckets, sum_value=series[-1])
        yield latency


class Registry:
    """One process's Prometheus metrics; built once and passed in (no global default registry)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.pool = Gauge("vmpooler_pool_vms", "VMs in a pool by state (read from Redis at scrape)",
                          ["pool", "state"], registry=r)
        self.size = Gauge("vmpooler_pool_size", "Size of a pool (as set through the pool configuration API, "
                          "else the file's)", ["pool"], registry=r)
        self.target = Gauge("vmpooler_pool_target_size", "Size the manager keeps a pool sized to demand at, by what "
                            "bounds it (floor, demand, max_size, provider_cap)", ["pool", "limit"], registry=r)
        self.demand = Gauge("vmpooler_pool_demand_per_minute", "VMs a pool sized to demand is forecast to be "
                            "asked for per minute", ["pool"], registry=r)
        self.clone = Histogram("vmpooler_clone_seconds", "Time to clone a VM", ["pool"], buckets=_VM_SECONDS,
                               registry=r)
        self.boot = Histogram("vmpooler_boot_seconds", "Time from clone start to ready", ["pool"],
                              buckets=_VM_SECONDS, registry=r)
        self.destroy = Histogram("vmpooler_destroy_seconds", "Time to destroy a VM", ["pool"],
                                 buckets=_VM_SECONDS, registry=r)
        self.per_request = _PerRequest(_API_SECONDS)
        r.register(self.per_request)

    async def render(self, config: Config, inventory: Inventory) -> bytes:
        names = [pool.name for pool in config.pools]
        counts = await inventory.counts(names)
        sizes = await pool_settings.sizes(inventory, config.pools)
        for pool in config.pools:
            self.size.labels(pool.name).set(sizes[pool.name])
            for state, value in counts[pool.name].items():
                self.pool.labels(pool.name, state).set(value)
        self.target.clear()  # one series per pool: the one of what bounds it now
        for name, target in (await targets(config, inventory)).items():
            self.target.labels(name, target.limit).set(target.size)
            self.demand.labels(name).set(target.rate)
        return generate_latest(self.registry)


class Tee:
    """A `Metrics` that sends every event to the configured sink and records it for Prometheus."""

    def __init__(self, inner: Metrics, prom: Registry) -> None:
        self.inner = inner
        self.prom = prom
        self._durations = {Phase.CLONE: prom.clone, Phase.BOOT: prom.boot, Phase.DESTROY: prom.destroy}

    def checkout(self, outcome: Outcome, name: str | None = None) -> None:
        self.inner.checkout(outcome, name)
        self.prom.per_request.count_checkout(outcome.value, outcome.subject(name) or "")

    def event(self, event: Event, name: str | None = None) -> None:
        self.inner.event(event, name)
        self.prom.per_request.count_event(event, name)

    def duration(self, phase: Phase, pool: str, seconds: float) -> None:
        self.inner.duration(phase, pool, seconds)
        self._durations[phase].labels(pool).observe(seconds)

    def pool_figure(self, figure: Figure, pool: str, value: int) -> None:
        self.inner.pool_figure(figure, pool, value)  # Prometheus reads pool figures from Redis at scrape time

    def close(self) -> None:
        self.inner.close()
