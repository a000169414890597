"""When things go wrong: an unexpected exception is a JSON 500 with a request id that is in the log;
Redis down or hung is a 503 within a bounded time, and the API recovers by itself when Redis is back."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.api.conftest import MakeClient, TestClient
from tests.api.helpers import expect_json, ready
from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from vmpooler_core import vms
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app
from vmpoolerd.api.errors import OutageLog


def test_unexpected_exception_is_a_json_500_with_a_logged_request_id(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(vms, "describe", broken)
    with caplog.at_level(logging.ERROR, logger="vmpooler.api"):
        body = expect_json(client.get("/api/v1/vm/vm1"), False, 500)
    assert "a bug" not in body["reason"]  # details go to the log, not to the client
    logged = [rec for rec in caplog.records if rec.name == "vmpooler.api"]
    assert len(logged) == 1 and body["request_id"] in logged[0].getMessage()
    assert logged[0].exc_info is not None and "a bug" in str(logged[0].exc_info[1])


def _client(url: str, deadline: float | None = None) -> TestClient:
    config = make_config(f"redis: {{url: '{url}', socket_timeout: 1}}\n"
                         "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")
    return TestClient(create_app(config, metrics=NullMetrics(), deadline=deadline))


def _until(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate` until it is true or `seconds` pass (no bare sleeps racing the server)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("method", "path", "after"), [
    ("GET", "/api/v1/status", 200), ("POST", "/api/v1/vm/pool1", 200), ("GET", "/api/v1/vm/vm1", 404)])
def test_redis_down_is_503_fast_and_recovers_without_a_restart(method: str, path: str, after: int) -> None:
    port = free_port()
    server = RedisServer(port=port).start()
    try:
        with _client(server.url) as client:
            ready(redis.Redis.from_url(server.url), "pool1", "vm1")
            assert client.get("/api/v1/status").status_code == 200
            server.stop()
            started = time.monotonic()
            expect_json(client.request(method, path), False, 503)
            assert time.monotonic() - started < 3
            assert client.get("/api/v1/vm").status_code == 200  # what needs no Redis still works
            server = RedisServer(port=port).start()  # a new, empty server: its scripts must be reloaded
            ready(redis.Redis.from_url(server.url), "pool1", "vm2")
            assert _until(lambda: client.request(method, path).status_code == after, 10)
    finally:
        server.stop()


def test_redis_missing_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="vmpooler.api"), \
            _client(f"redis://127.0.0.1:{port}/0") as client:
        assert any("unreachable" in rec.getMessage() for rec in caplog.records)
        expect_json(client.get("/api/v1/status"), False, 503)
        server = RedisServer(port=port).start()
        try:
            assert _until(lambda: client.get("/api/v1/status").status_code == 200, 10)
        finally:
            server.stop()


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A server that accepts connections and reads commands but never answers: a hung Redis."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_hung_redis_is_503_at_the_deadline(silent_redis: str) -> None:
    with _client(silent_redis, deadline=0.5) as client:
        for path in ("/api/v1/status", "/api/v1/vm/pool1"):
            started = time.monotonic()
            response = client.request("POST" if path.endswith("pool1") else "GET", path)
            elapsed = time.monotonic() - started
            expect_json(response, False, 503)
            assert 0.4 < elapsed < 2


def test_default_deadline_follows_the_socket_timeout(make_client: MakeClient) -> None:
    with make_client() as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        assert services.deadline == 2.0  # socket_timeout 1 + 1


def test_an_outage_is_logged_once_not_per_request(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="vmpooler.api"), \
            _client(f"redis://127.0.0.1:{port}/0") as client:
        caplog.clear()
        for _ in range(20):
            expect_json(client.get("/api/v1/status"), False, 503)
    reports = [rec.getMessage() for rec in caplog.records if rec.name == "vmpooler.api"]
    assert len(reports) == 1 and reports[0].startswith("redis unavailable: ConnectionError")


def test_outage_log_reports_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog(every=0.2)
    with caplog.at_level(logging.WARNING, logger="vmpooler.api"):
        for _ in range(3):
            outages.note("down")
        assert _until(lambda: time.monotonic() - outages.last >= 0.2, 2)
        outages.note("still down")
    assert [rec.getMessage() for rec in caplog.records] == [
        "redis unavailable: down", "redis unavailable: still down (2 more failed requests since the last report)"]
