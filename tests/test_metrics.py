"""Metrics sinks against real listeners: a UDP socket for statsd, a TCP server for graphite."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StatsdNames, make_config
from tests.redis_server import free_port
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import SinkSettings
from vmpooler_core.errors import NoCapacity, NotFound
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import Figure, GraphiteMetrics, NullMetrics, Outcome, Phase, StatsdMetrics, from_settings
from vmpooler_core.request import from_path
from vmpoolerd.prometheus import Registry, Tee


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


class _Lines(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.server.lines.append(line.decode().strip())  # type: ignore[attr-defined]


@pytest.fixture
def graphite() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Lines)
    server.daemon_threads = True
    server.lines = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sink_choice_follows_the_seed() -> None:
    both = make_config("statsd: {server: s}\ngraphite: {server: g}\n")
    assert isinstance(from_settings(both.metrics), StatsdMetrics)
    only_graphite = make_config("graphite: {server: 127.0.0.1, port: 1}\n")
    sink = from_settings(only_graphite.metrics)
    assert isinstance(sink, GraphiteMetrics)
    sink.close()
    assert isinstance(from_settings(make_config("").metrics), NullMetrics)


async def test_checkout_metrics_reach_statsd(udp: socket.socket, inventory: Inventory,
                                             sync_redis: redis.Redis) -> None:
    port = udp.getsockname()[1]
    cfg = make_config(f"statsd: {{server: 127.0.0.1, port: {port}, prefix: vmp}}\n"
                      "providers: {dummy: {}}\npools:\n  - {name: pool1, alias: poolone, size: 1}\n")
    co = Checkout(cfg, inventory, from_settings(cfg.metrics))
    sync_redis.sadd(Keys().ready("pool1"), "vm1")
    await co.take(from_path("poolone"))
    assert udp.recv(512) == b"vmp.checkout.success.pool1:1|c"
    with pytest.raises(NoCapacity):
        await co.take(from_path("poolone"))
    assert udp.recv(512) == b"vmp.checkout.empty.poolone:1|c"
    with pytest.raises(NotFound):
        await co.take(from_path("bogus"))
    assert udp.recv(512) == b"vmp.checkout.invalid.bogus:1|c"


def test_statsd_gauge_and_timing(udp: socket.socket) -> None:
    sink = StatsdMetrics(SinkSettings("127.0.0.1", udp.getsockname()[1], "vmpooler"))
    sink.pool_figure(Figure.READY, "pool1", 4)
    sink.duration(Phase.CLONE, "templates/centos", 1.5)
    assert udp.recv(512) == b"vmpooler.ready.pool1:4|g"
    assert udp.recv(512) == b"vmpooler.clone.templates/centos:1500.000000|ms"


def test_graphite_lines(graphite: socketserver.ThreadingTCPServer) -> None:
    sink = GraphiteMetrics(SinkSettings("127.0.0.1", graphite.server_address[1], "vmpooler"))
    sink.pool_figure(Figure.READY, "pool1", 3)
    sink.checkout(Outcome.SUCCESS, "pool1")
    sink.duration(Phase.DESTROY, "pool1", 2.5)
    lines: list[str] = graphite.lines  # type: ignore[attr-defined]
    _wait_for(lambda: len(lines) == 3)
    sink.close()
    now = time.time()
    names = [line.split() for line in lines]
    assert [n[:2] for n in names] == [["vmpooler.ready.pool1", "3"], ["vmpooler.checkout.success.pool1", "1"],
                                      ["vmpooler.destroy.pool1", "2.5"]]
    assert all(abs(int(n[2]) - now) < 60 for n in names)


def test_dead_servers_never_block_or_raise() -> None:
    dead = free_port()  # nothing listens here
    for sink in (StatsdMetrics(SinkSettings("127.0.0.1", dead)), GraphiteMetrics(SinkSettings("127.0.0.1", dead)),
                 StatsdMetrics(SinkSettings("no-such-host.invalid", 8125))):
        start = time.perf_counter()
        for _ in range(1000):
            sink.checkout(Outcome.SUCCESS, "pool1")
            sink.pool_figure(Figure.READY, "pool1", 1)
        assert time.perf_counter() - start < 1.0
        sink.close()


def test_graphite_recovers_when_the_server_comes_back() -> None:
    port = free_port()
    sink = GraphiteMetrics(SinkSettings("127.0.0.1", port), retry_seconds=0.05)
    sink.send_count("lost")  # nobody listens yet: dropped, not queued forever, not raised
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), _Lines)
    server.lines = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lines: list[str] = server.lines  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while not any(line.startswith("vmpooler.back ") for line in lines):
            assert time.monotonic() < deadline, "graphite sink never reconnected"
            sink.send_count("back")
            time.sleep(0.02)
    finally:
        sink.close()
        server.shutdown()
        server.server_close()


def test_the_statsd_name_of_every_event(udp: socket.socket) -> None:
    sink = StatsdMetrics(SinkSettings("127.0.0.1", udp.getsockname()[1], "vmp"))
    sink.checkout(Outcome.INVALID)  # a request whose names could not be read
    sink.checkout(Outcome.RATELIMITED)
    sink.checkout(Outcome.TOOMANY, "pool1")  # counted per request, not per name
    sink.pool_figure(Figure.RUNNING, "pool1", 2)
    sink.duration(Phase.BOOT, "pool1", 0.25)
    assert [udp.recv(512) for _ in range(5)] == [
        b"vmp.checkout.invalid.unknown:1|c", b"vmp.checkout.ratelimited:1|c", b"vmp.checkout.toomany:1|c",
        b"vmp.running.pool1:2|g", b"vmp.boot.pool1:250.000000|ms"]


def test_prometheus_counts_the_same_events_by_label() -> None:
    registry = Registry()
    inner = StatsdNames()
    tee = Tee(inner, registry)
    tee.checkout(Outcome.SUCCESS, "pool1")
    tee.checkout(Outcome.SUCCESS, "pool1")
    tee.checkout(Outcome.INVALID)
    tee.checkout(Outcome.RATELIMITED)
    tee.duration(Phase.CLONE, "pool1", 3.0)
    tee.pool_figure(Figure.READY, "pool1", 4)
    assert inner.counts == ["checkout.success.pool1"] * 2 + ["checkout.invalid.unknown", "checkout.ratelimited"]
    assert inner.last("timing", "clone.pool1") == 3.0 and inner.last("gauge", "ready.pool1") == 4
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry.registry).decode())
               for s in family.samples}
    assert samples[("vmpooler_checkouts_total", (("outcome", "success"), ("pool", "pool1")))] == 2
    assert samples[("vmpooler_checkouts_total", (("outcome", "invalid"), ("pool", "unknown")))] == 1
    assert samples[("vmpooler_checkouts_total", (("outcome", "ratelimited"), ("pool", "")))] == 1
    assert samples[("vmpooler_clone_seconds_count", (("pool", "pool1"),))] == 1
    assert samples[("vmpooler_clone_seconds_sum", (("pool", "pool1"),))] == 3.0
