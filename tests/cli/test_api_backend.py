"""The API backend against servers other than ours: the mid-2016 original (no `pools` block in /status),
a later one that answers FQDNs, and servers that answer oddly. Stand-ins are tiny Starlette apps served
for real (pools) or httpx mock transports (single answers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.cli.conftest import LiveServer, Vmp
from vmpooler_cli.backends.api import ApiBackend
from vmpooler_cli.backends.api_version import split_url
from vmpooler_cli.errors import CliError, Unreachable, classify
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_core.errors import InvalidRequest, NoCapacity, NotFound, Unauthorized

OLD_STATUS = {"capacity": {"current": 2, "total": 15, "percent": 13.3},
              "queue": {"pending": 0, "cloning": 0, "booting": 0, "ready": 2, "running": 0, "completed": 0,
                        "total": 2},
              "status": {"ok": False, "message": "Found 1 empty pools.", "empty": ["pool2"], "uptime": 1.0}}


def old_server(dashboard: bool) -> Starlette:
    """The original as of mid-2016: /status without `pools`, GET /vm, and the dashboard's JSON."""
    async def status(request: Request) -> Response:
        return JSONResponse(OLD_STATUS)

    async def vm(request: Request) -> Response:
        return JSONResponse(["pool1", "pool2", "pool3"])

    async def pool_stats(request: Request) -> Response:
        return JSONResponse({"pool1": {"size": 5, "ready": 2}, "pool2": {"size": 10, "ready": 0}})

    routes = [Route("/api/v1/status", status), Route("/api/v1/vm", vm)]
    if dashboard:
        routes.append(Route("/dashboard/stats/vmpooler/pool", pool_stats))
    return Starlette(routes=routes)


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], str]]:
    started: list[LiveServer] = []

    def run(app: Starlette) -> str:
        started.append(LiveServer(app))
        return started[-1].url

    yield run
    for server in started:
        server.stop()


def test_pools_from_an_old_server_with_its_dashboard(serve: Callable[[Starlette], str]) -> None:
    url = serve(old_server(dashboard=True))
    got = Vmp("api", ["--api", url + "/api/v1/"]).json("pools")
    assert got == {"pools": [
        {"name": "pool1", "aliases": [], "ready": 2, "pending": None, "running": None, "size": 5},
        {"name": "pool2", "aliases": [], "ready": 0, "pending": None, "running": None, "size": 10},
        {"name": "pool3", "aliases": [], "ready": None, "pending": None, "running": None, "size": None},
    ]}
    table = Vmp("api", ["--api", url]).ok("pools").stdout.splitlines()
    assert table[1].split() == ["pool1", "2", "-", "-", "5"]


def test_pools_from_an_old_server_without_a_dashboard(serve: Callable[[Starlette], str]) -> None:
    url = serve(old_server(dashboard=False))
    got = Vmp("api", ["--api", url]).json("pools")["pools"]
    # What /status says: pool2 is empty; nothing is known of the others.
    assert [(p["name"], p["ready"], p["size"]) for p in got] == [("pool1", None, None), ("pool2", 0, None),
                                                                 ("pool3", None, None)]


def mock(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ApiBackend:
    """A backend on API v1 (named by the URL: nothing asked first) whose every answer is the handler's."""
    return ApiBackend("http://vmpooler.test:4567/api/v1", transport=httpx.MockTransport(handler), **kwargs)


def with_pool_list(answer: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """`answer` to everything but GET /api/v1/vm, the pool list: after a 404 the CLI checks with it that the
    server speaks the version asked before it believes the 404 is about the pool."""
    def handler(request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == ("GET", "/api/v1/vm"):
            return httpx.Response(200, json=["pool1"])
        return answer
    return handler


def test_a_later_server_answering_fqdns_without_a_domain() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/vm"
        return httpx.Response(200, json={"ok": True, "pool1": {"hostname": ["a.one.example", "b.one.example"]},
                                         "pool2": {"hostname": "c.two.example"}})

    got = mock(handler).checkout([("pool1", 2), ("pool2", 1)])
    assert [got.fqdn(h) for _, h in got.vms] == ["a.one.example", "b.one.example", "c.two.example"]
    assert [p for p, _ in got.vms] == ["pool1", "pool1", "pool2"]


def test_the_request_carries_the_token_and_string_counts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "pool1": {"hostname": "vm1"}, "domain": "company.com"})

    got = mock(handler, token="t0k3n").checkout([("pool1", 1)])
    assert got.fqdn("vm1") == "vm1.company.com"
    assert seen[0].headers["X-AUTH-TOKEN"] == "t0k3n"
    assert seen[0].content == b'{"pool1":"1"}'


@pytest.mark.parametrize(("status", "body", "kind", "code"), [
    # The original Ruby server: only {"ok": false}, so the status code decides.
    (404, {"ok": False}, NotFound, ExitCode.NOT_FOUND),
    (503, {"ok": False}, NoCapacity, ExitCode.NO_CAPACITY),
    (401, {"ok": False}, Unauthorized, ExitCode.UNAUTHORIZED),
    (400, {"ok": False}, InvalidRequest, ExitCode.USAGE),
    (500, None, CliError, ExitCode.ERROR),
    (429, {"ok": False}, CliError, ExitCode.LIMITED),
    # Ours: the code decides, whatever the status.
    (404, {"ok": False, "code": "unknown_pool", "reason": "unknown pool or alias: x"}, NotFound, ExitCode.NOT_FOUND),
    (503, {"ok": False, "code": "no_capacity", "reason": "not enough ready VMs for 'pool1'"}, NoCapacity,
     ExitCode.NO_CAPACITY),
    (503, {"ok": False, "code": "backend_unavailable", "reason": "redis is unavailable: ConnectionError"},
     Unreachable, ExitCode.UNREACHABLE),
    (503, {"ok": False, "code": "backend_unavailable",
           "reason": "a backend (redis or authentication) did not answer in time"}, Unreachable, ExitCode.UNREACHABLE),
    (401, {"ok": False, "code": "unauthorized", "reason": "invalid token"}, Unauthorized, ExitCode.UNAUTHORIZED),
    (400, {"ok": False, "code": "invalid_request", "reason": "bad tag"}, InvalidRequest, ExitCode.USAGE),
    (413, {"ok": False, "code": "body_too_large", "reason": "request body over 1048576 bytes"}, InvalidRequest,
     ExitCode.USAGE),
    (500, {"ok": False, "code": "internal_error", "reason": "internal error", "request_id": "ab12"}, CliError,
     ExitCode.ERROR),
    (404, {"ok": False, "code": "no_such_route", "reason": "no such route"}, CliError, ExitCode.ERROR),
    (429, {"ok": False, "code": "rate_limited", "reason": "rate limit exceeded", "retry_after": 3}, CliError,
     ExitCode.LIMITED),
    (403, {"ok": False, "code": "too_many_vms", "reason": "this token holds 5 VMs", "held": 5, "limit": 5},
     CliError, ExitCode.LIMITED),
    # A code from a newer server that this client does not know: the status code decides.
    (503, {"ok": False, "code": "from_the_future", "reason": "later"}, NoCapacity, ExitCode.NO_CAPACITY),
])
def test_http_answers_map_to_exit_codes(status: int, body: Any, kind: type[Exception], code: ExitCode) -> None:
    backend = mock(with_pool_list(httpx.Response(status, json=body) if body else httpx.Response(status, text="<h1>")))
    with pytest.raises(kind) as err:
        backend.checkout([("pool1", 1)])
    assert classify(err.value)[0] == code
    if body and "reason" in body:
        assert body["reason"] in str(err.value)  # the server's own explanation is passed on


def test_an_answer_that_is_not_json() -> None:
    backend = mock(lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(CliError, match="not JSON"):
        backend.status()


@pytest.mark.parametrize(("given", "root"), [
    ("http://h:4567", "http://h:4567"), ("http://h:4567/", "http://h:4567"), ("h:4567", "http://h:4567"),
    ("https://h/api/v1", "https://h"), ("https://h/api/v1/", "https://h"),
])
def test_api_root(given: str, root: str) -> None:
    assert split_url(given) == (root, "v1" if given.rstrip("/").endswith("/api/v1") else None)
