"""Metrics from a live daemon (API and manager in one process, dummy provider): `/metrics` parsed with
prometheus_client's own parser, and statsd and graphite received by real listeners in this test."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, wait_until, write_config
from vmpooler_core.keys import STATES, Keys

K = Keys()
POOLS = "  - {name: pool1, alias: [poolone], size: 3}\n  - {name: pool2, size: 2}\n"
SIZES = {"pool1": 3, "pool2": 2}
FAST = ("  manager_loop_seconds: 0.2\n  vm_checktime: 0\n  task_limit: 4\n")
DUMMY = "providers:\n  dummy: {clone_time: 0.05, boot_time: 0.05}\n"


def start_all(tmp_path: Path, redis_url: str, start_daemon: StartDaemon, extra: str = "") -> Daemon:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOLS, app=FAST, extra=DUMMY + extra)
    return start_daemon(["--config", str(config)]).wait_serving()


def pools_full(daemon: Daemon) -> bool:
    assert daemon.running(), daemon.log()
    pools = daemon.get("/api/v1/status").json()["pools"]
    return all(pools[name]["ready"] == size and pools[name]["pending"] == 0 for name, size in SIZES.items())


# Prometheus ------------------------------------------------------------------------------------------

def scrape(daemon: Daemon) -> list[Sample]:
    response = daemon.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain"), response.text
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def redis_counts(r: redis.Redis) -> dict[tuple[str, str], int]:
    return {(pool, state): int(r.scard(K.state(state, pool))) for pool in SIZES for state in STATES}


def check_histogram(samples: list[Sample], name: str, **labels: str) -> float:
    """The count of one histogram series, after checking its buckets are cumulative up to +Inf = count."""
    buckets = sorted(((float(s.labels["le"]), s.value) for s in samples if s.name == f"{name}_bucket"
                      and all(s.labels.get(k) == v for k, v in labels.items())), key=lambda b: b[0])
    count = value(samples, f"{name}_count", **labels)
    assert buckets and count is not None, (name, labels)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False)), buckets
    assert buckets[-1] == (math.inf, count)
    return count


def test_prometheus_metrics_from_a_live_daemon(tmp_path: Path, redis_url: str, sync_redis: redis.Redis,
                                               start_daemon: StartDaemon) -> None:
    daemon = start_all(tmp_path, redis_url, start_daemon)
    wait_until(lambda: pools_full(daemon), 30, "the manager filled both pools")

    # Pool gauges are Redis's counts (read when Redis did not change around the scrape).
    def gauges_match() -> bool:
        before = redis_counts(sync_redis)
        samples = scrape(daemon)
        if redis_counts(sync_redis) != before:
            return False
        for (pool, state), count in before.items():
            assert value(samples, "vmpooler_pool_vms", pool=pool, state=state) == count, (pool, state, samples)
        for pool, size in SIZES.items():
            assert value(samples, "vmpooler_pool_size", pool=pool) == size
        return True

    wait_until(gauges_match, 10, "a scrape while Redis held still")

    def checkouts(samples: list[Sample]) -> float:
        return value(samples, "vmpooler_checkouts_total", outcome="success", pool="pool1") or 0.0

    before = checkouts(scrape(daemon))
    got = daemon.get("/api/v1/status")  # one more /status for the latency histogram
    assert got.status_code == 200
    taken = httpx.post(daemon.url + "/api/v1/vm/poolone", timeout=5)
    assert taken.status_code == 200, taken.text
    host = taken.json()["pool1"]["hostname"]
    samples = scrape(daemon)
    assert checkouts(samples) == before + 1
    assert value(samples, "vmpooler_pool_vms", pool="pool1", state="running") == 1  # it is Redis's count
    assert sync_redis.sismember(K.running("pool1"), host)

    # API latency by route template (not by path), method and status.
    assert check_histogram(samples, "vmpooler_api_request_seconds", method="POST", route="/vm/{hostname}",
                           status="200") == 1
    assert check_histogram(samples, "vmpooler_api_request_seconds", method="GET", route="/status",
                           status="200") >= 2
    routes = {s.labels["route"] for s in samples if s.name == "vmpooler_api_request_seconds_count"}
    assert not any(host in route or "pool1" in route for route in routes), routes

    # Clone and boot times of the VMs the manager made.
    for pool, size in SIZES.items():
        assert check_histogram(samples, "vmpooler_clone_seconds", pool=pool) >= size
        assert check_histogram(samples, "vmpooler_boot_seconds", pool=pool) >= size
    assert daemon.stop() == 0, daemon.log()


# statsd and graphite -----------------------------------------------------------------------------------

class Listener:
    """Lines received by a real statsd (UDP) or graphite (TCP plaintext) server, in a thread."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "statsd" else socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        if kind == "graphite":
            self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"{kind}-listener", daemon=True)
        self.thread.start()

    def _add(self, text: str) -> None:
        with self.lock:
            self.lines.extend(line for line in text.splitlines() if line)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.kind == "statsd":
                    self._add(self.sock.recv(65536).decode())
                else:
                    conn, _ = self.sock.accept()
                    threading.Thread(target=self._read, args=(conn,), daemon=True).start()
            except TimeoutError:
                continue

    def _read(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            conn.settimeout(0.2)
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                buffered += data
                complete, _, buffered = buffered.rpartition(b"\n")
                self._add(complete.decode())

    def values(self, name: str) -> list[tuple[str, str]]:
        """(value, statsd type) of each line received for `name` (graphite lines, `name value epoch`,
        have no type: "")."""
        found = []
        with self.lock:
            lines = list(self.lines)
        for line in lines:
            if self.kind == "statsd":  # name:value|type
                got, _, rest = line.partition(":")
                val, _, kind = rest.partition("|")
            else:
                got, val, _epoch = (line.split(" ") + ["", ""])[:3]
                kind = ""
            if got == name:
                found.append((val, kind))
        return found

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(params=["statsd", "graphite"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    server = Listener(request.param)
    yield server
    server.close()


def test_statsd_and_graphite_receive_the_daemons_metrics(tmp_path: Path, redis_url: str, listener: Listener,
                                                        start_daemon: StartDaemon) -> None:
    sink = f"{listener.kind}:\n  server: 127.0.0.1\n  port: {listener.port}\n  prefix: vmp\n"
    daemon = start_all(tmp_path, redis_url, start_daemon, extra=sink)
    wait_until(lambda: pools_full(daemon), 30, "the manager filled both pools")

    def typed(value: str, statsd_type: str) -> tuple[str, str]:
        return value, statsd_type if listener.kind == "statsd" else ""

    # The manager's gauges (a full pool: ready = size) and clone times (statsd in ms, graphite in s).
    for pool, size in SIZES.items():
        wait_until(lambda p=pool, s=size: typed(str(s), "g") in listener.values(f"vmp.ready.{p}"),  # type: ignore[misc]
                   10, f"{listener.kind}: ready.{pool} = {size}")
        clones = listener.values(f"vmp.clone.{pool}")
        assert len(clones) >= size and all(kind == typed("", "ms")[1] and float(v) >= 0 for v, kind in clones)
    # Checkouts through the API: counted by the real pool name even when asked by alias, and by the
    # name asked for when it is unknown.
    assert httpx.post(daemon.url + "/api/v1/vm/poolone", timeout=5).status_code == 200
    wait_until(lambda: listener.values("vmp.checkout.success.pool1") == [typed("1", "c")], 10,
               f"{listener.kind}: checkout.success.pool1")
    assert httpx.post(daemon.url + "/api/v1/vm/nosuchpool", timeout=5).status_code == 404
    wait_until(lambda: listener.values("vmp.checkout.invalid.nosuchpool") == [typed("1", "c")], 10,
               f"{listener.kind}: checkout.invalid.nosuchpool")
    assert daemon.stop() == 0, daemon.log()
