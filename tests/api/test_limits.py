"""Limits at the API: rate limits (429, per class, per token or address, failing open), the per-token
cap on VMs held (403), and the request head limits (414, 431), in-process and on the real daemon."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import jsonschema
import pytest
import redis

from tests.api.conftest import TOKEN, TestClient, config_text
from tests.api.helpers import K, expect_json, make_token, members, ready, running
from tests.api.test_daemon import start, wait_until_serving, write_config
from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from vmpooler_core.auth import UsersAuthenticator
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app
from vmpoolerd.api.openapi import document

OTHER_TOKEN = "bbcdefghijklmnopqrstuvwxyz012345"
RATES = """
rate_limits:
  enabled: true
  checkout: {limit: 2, period: 60}
  return: {limit: 2, period: 60}
  other: {per_token: {limit: 4, period: 60}, per_address: {limit: 3, period: 60}}
"""
Limited = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def limited(redis_url: str, authenticator: UsersAuthenticator) -> Limited:
    """`with limited(auth=True, rates=..., app="  max_vms_per_token: 2") as client: ...`"""

    @contextmanager
    def make(*, auth: bool = False, rates: str = RATES, app: str = "", url: str = redis_url) -> Iterator[TestClient]:
        config = make_config(config_text(url, auth=auth, app=app) + rates)
        api = create_app(config, metrics=NullMetrics(), authenticator=authenticator if auth else None)
        with TestClient(api) as client:
            yield client

    return make


def statuses(client: TestClient, method: str, path: str, times: int, **kwargs: object) -> list[int]:
    return [client.request(method, path, **kwargs).status_code for _ in range(times)]  # type: ignore[arg-type]


# Rate limits ----------------------------------------------------------------------------------------

def test_off_by_default_and_then_nothing_is_counted(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", *(f"vm{n}" for n in range(30)))
    assert set(statuses(client, "POST", "/api/v1/vm/pool1", 30)) == {200}
    assert set(statuses(client, "GET", "/api/v1/status", 30)) == {200}
    assert not list(r.scan_iter(K.ratelimit("*")))


def test_a_checkout_over_the_limit_is_a_429_in_the_originals_shape_and_takes_nothing(
        limited: Limited, r: redis.Redis) -> None:
    ready(r, "pool1", "vm1", "vm2", "vm3", "vm4")
    with limited() as client:
        assert statuses(client, "POST", "/api/v1/vm/pool1", 2) == [200, 200]
        response = client.post("/api/v1/vm", json={"pool1": "1"})
    body = expect_json(response, False, 429)
    assert body == {"ok": False, "code": "rate_limited", "reason": "rate limit exceeded", "limit": 2, "period": 60,
                    "retry_after": body["retry_after"]}
    assert 25 <= body["retry_after"] <= 30  # one interval (60 s / 2), less the time the test took
    headers = response.headers
    assert headers["retry-after"] == str(body["retry_after"])
    assert (headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"]) == ("2", "0")
    assert abs(int(headers["x-ratelimit-reset"]) - (time.time() + 60)) <= 5
    assert len(members(r, "ready", "pool1")) == 2  # nothing taken
    jsonschema.validate(body, document()["components"]["schemas"]["RateLimited"])


def test_classes_are_counted_apart(limited: Limited, r: redis.Redis) -> None:
    ready(r, "pool1", "vm1", "vm2", "vm3")
    running(r, "pool1", "gone1")
    with limited() as client:
        assert statuses(client, "POST", "/api/v1/vm/pool1", 3) == [200, 200, 429]
        assert statuses(client, "GET", "/api/v1/status", 4) == [200, 200, 200, 429]  # other: 3 per address
        assert statuses(client, "DELETE", "/api/v1/vm/gone1", 1) == [200]  # return: its own bucket
        # Disk and snapshot requests are POSTs under /vm: the checkout class, as in the original.
        assert client.post("/api/v1/vm/gone1/snapshot").status_code == 429


def test_a_return_over_the_limit_leaves_the_vm_running(limited: Limited, r: redis.Redis) -> None:
    for host in ("vm1", "vm2", "vm3"):
        running(r, "pool1", host)
    with limited() as client:
        assert statuses(client, "DELETE", "/api/v1/vm/vm1", 2) == [200, 404]  # counted, found or not
        expect_json(client.delete("/api/v1/vm/vm2"), False, 429)
    assert members(r, "running", "pool1") == {"vm2", "vm3"}


def test_each_token_has_its_own_bucket_and_made_up_tokens_count_against_the_address(
        limited: Limited, r: redis.Redis) -> None:
    make_token(r, TOKEN)
    make_token(r, OTHER_TOKEN)
    with limited(auth=True) as client:
        for token in (TOKEN, OTHER_TOKEN):
            assert statuses(client, "GET", "/api/v1/status", 5, headers={"X-AUTH-TOKEN": token}) == [200] * 4 + [429]
        assert statuses(client, "GET", "/api/v1/status", 2) == [200, 200]
        made_up = {"X-AUTH-TOKEN": "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}
        assert statuses(client, "GET", "/api/v1/status", 2, headers=made_up) == [200, 429]
        # Guessing tokens on checkout is limited too: each wrong guess counts before it is refused.
        assert statuses(client, "POST", "/api/v1/vm/pool1", 3, headers=made_up) == [401, 401, 429]


def test_without_auth_a_token_header_buys_no_bucket_of_its_own(limited: Limited) -> None:
    with limited() as client:
        codes = [client.get("/api/v1/status", headers={"X-AUTH-TOKEN": f"token{n}"}).status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]


def test_probes_the_document_and_the_dashboard_page_are_not_limited(limited: Limited) -> None:
    with limited() as client:
        assert statuses(client, "GET", "/api/v1/status", 4)[-1] == 429
        for path in ("/healthcheck", "/api/v1/openapi.json", "/dashboard/", "/metrics"):
            assert 429 not in statuses(client, "GET", path, 5), path
        assert client.get("/dashboard/stats/vmpooler/pool").status_code == 429  # reads Redis: limited


def test_behind_a_proxy_the_address_comes_from_its_header(limited: Limited) -> None:
    rates = RATES + "  address_header: X-Forwarded-For\n"
    with limited(rates=rates) as client:
        def get(forwarded: str) -> int:
            return client.get("/api/v1/status", headers={"X-Forwarded-For": forwarded}).status_code

        assert [get("10.0.0.1") for _ in range(3)] == [200] * 3
        assert get("10.0.0.2") == 200
        # The last entry is the proxy's; what the client wrote before it does not change its bucket.
        assert get("192.168.1.1, 10.0.0.1") == 429


def test_with_redis_down_requests_go_unlimited_logged_once_per_outage(
        limited: Limited, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = RedisServer(port=port).start()
    try:
        with limited(url=server.url) as client, caplog.at_level(logging.WARNING, logger="vmpooler.api"):
            assert statuses(client, "GET", "/api/v1/vm", 1) == [200]  # GET /vm lists the config's pools
            server.stop()
            assert statuses(client, "GET", "/api/v1/vm", 5) == [200] * 5
            assert client.get("/api/v1/status").status_code == 503  # work that needs Redis fails anyway
            server.start()  # empty: the restarted Redis keeps no data, so the bucket starts full
            assert statuses(client, "GET", "/api/v1/vm", 4) == [200, 200, 200, 429]  # limited again
    finally:
        server.stop()
    said = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("rate limiter")]
    assert len(said) == 2 and "not limited" in said[0] and "limited again" in said[1], said


# The per-token cap ----------------------------------------------------------------------------------

def test_a_checkout_over_the_tokens_cap_is_a_403_and_takes_nothing(limited: Limited, r: redis.Redis) -> None:
    make_token(r, TOKEN)
    ready(r, "pool1", "vm1", "vm2", "vm3")
    token = {"X-AUTH-TOKEN": TOKEN}
    with limited(auth=True, rates="", app="  max_vms_per_token: 2") as client:
        expect_json(client.post("/api/v1/vm/pool1+pool1", headers=token), True, 200)
        body = expect_json(client.post("/api/v1/vm", json={"pool1": 1}, headers=token), False, 403)
        assert (body["held"], body["limit"]) == (2, 2) and "at most 2" in body["reason"]
        assert members(r, "ready", "pool1") == {"vm1", "vm2", "vm3"} - members(r, "running", "pool1")
        jsonschema.validate(body, document()["components"]["schemas"]["TooManyVms"])
        host = sorted(members(r, "running", "pool1"))[0]
        expect_json(client.delete(f"/api/v1/vm/{host}", headers=token), True, 200)
        expect_json(client.post("/api/v1/vm/pool1", headers=token), True, 200)
        expect_json(client.post("/api/v1/vm/pool1"), False, 503)  # no token, no cap: only the pool is short


# Constant-time token comparison ---------------------------------------------------------------------

def test_a_token_that_is_not_ascii_is_refused_not_a_500(auth_client: TestClient, r: redis.Redis) -> None:
    # hmac.compare_digest refuses non-ASCII str; the tokens are compared as bytes.
    running(r, "pool1", "vm1", token=TOKEN)
    response = auth_client.delete("/api/v1/vm/vm1", headers={"X-AUTH-TOKEN": "tok\xe9n".encode("latin-1")})
    expect_json(response, False, 401)
    assert members(r, "running", "pool1") == {"vm1"}


# Request head limits --------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/api/v1/vm/" + "a" * 9000, {}, 414),
    ("/api/v1/status?x=" + "a" * 9000, {}, 414),
    ("/api/v1/status", {f"x-h{n}": "v" for n in range(101)}, 431),
    ("/api/v1/status", {"x-big": "a" * 17000}, 431),
])
def test_oversized_request_heads_are_json_4xx(client: TestClient, path: str, headers: dict[str, str],
                                               status: int) -> None:
    expect_json(client.get(path, headers=headers), False, status)


def test_headers_just_under_the_limits_are_fine(client: TestClient) -> None:
    headers = {f"x-h{n}": "v" * 100 for n in range(90)}
    assert client.get("/api/v1/status", headers=headers).status_code == 200


def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send a whole request (however long), then read the whole answer: status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head[9:12]), body


def test_the_daemon_refuses_oversized_heads_with_json_before_reading_them_whole(
        tmp_path: Path, redis_url: str) -> None:
    # httptools alone would read a 10 MB header into memory and hand it to the app (vmpoolerd/http_limits.py).
    port = free_port()
    proc = start(["api", "--config", str(write_config(tmp_path / "vmpooler.yaml", redis_url)), "--port", str(port),
                  "--log-level", "warning"])
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}")
        status = b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\n"
        assert _exchange(port, status + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")[0] == 431
        assert _exchange(port, status + b"X-Big: " + b"a" * 10_000_000 + b"\r\n\r\n")[0] == 431
        assert _exchange(port, status + b"".join(b"X-%d: v\r\n" % n for n in range(5000)) + b"\r\n")[0] == 431
        assert _exchange(port, b"GET /api/v1/vm/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 414
        code, body = _exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
        assert code == 400 and b'"ok": false' in body
        assert _exchange(port, status + b"X-Fine: " + b"a" * 15_000 + b"\r\nConnection: close\r\n\r\n")[0] == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "unexpected error" not in stderr and "Traceback" not in stderr, stderr
