"""`/status`, `/summary`, `GET /vm`, the dashboard routes, the OpenAPI document, and routing itself:
unversioned aliases, trailing slashes, unknown routes and wrong methods (JSON, never HTML)."""

from __future__ import annotations

import datetime

import pytest
import redis
import schemathesis

from tests.api.conftest import A8_POOLS, MakeClient, TestClient
from tests.api.helpers import K, expect_json, ready, report_health, running
from vmpooler_core.provider import ProviderError, ProviderUnavailable
from vmpoolerd.api import routing
from vmpoolerd.manager.health_report import HealthReport

TODAY = datetime.datetime.now(datetime.UTC).date()


def day(offset: int = 0) -> str:
    return (TODAY + datetime.timedelta(days=offset)).isoformat()


def test_pool_names(client: TestClient) -> None:
    for path in ("/api/v1/vm", "/vm", "/api/v1/vm/"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == ["pool1", "pool2"]


def test_status(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1", "a2")
    running(r, "pool2", "b1")
    r.sadd(K.pending("pool2"), "p1", "p2")
    r.set(K.clone_tasks(), 1)
    r.hset(K.boot_stats(day()), mapping={"pool1:a1": "10", "pool1:a2": "30"})
    response = client.get("/api/v1/status")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    doc = response.json()
    assert list(doc) == sorted(doc)  # the original sorts the top level
    assert doc["capacity"] == {"current": 2, "total": 15, "percent": 13.3}
    assert doc["queue"] == {"pending": 2, "cloning": 1, "booting": 1, "ready": 2, "running": 1, "completed": 0,
                            "total": 5}
    assert doc["pools"]["pool1"] == {"ready": 2, "running": 0, "pending": 0, "max": 5, "alias": ["poolone"]}
    assert doc["boot"]["count"] == {"total": 2} and doc["boot"]["duration"]["average"] == 20
    assert doc["status"]["ok"] is False and doc["status"]["empty"] == ["pool2"]
    assert client.get("/status").json()["capacity"] == doc["capacity"]


def test_summary(client: TestClient, r: redis.Redis) -> None:
    r.hset(K.boot_stats(day(-1)), mapping={"pool1:a1": "10", "pool2:b1": "30"})
    r.hset(K.boot_stats(day()), mapping={"pool1:a2": "20"})
    r.hset(K.clone_stats(day()), mapping={"pool1:a2": "5"})
    r.hset(K.tag_stats(day()), mapping={"a2:project": "x", "b1:project": "y", "a1:project": "x"})
    doc = client.get(f"/api/v1/summary?from={day(-1)}&to={day()}").json()
    assert [d["date"] for d in doc["daily"]] == [day(-1), day()]
    assert doc["boot"]["count"] == {"total": 3, "pool": {"pool1": {"total": 2}, "pool2": {"total": 1}}}
    assert doc["boot"]["duration"]["min"] == 10 and doc["boot"]["duration"]["max"] == 30
    assert doc["boot"]["duration"]["pool"]["pool1"]["average"] == 15
    assert doc["tag"] == {"project": {"x": 2, "y": 1, "total": 3}}
    assert doc["daily"][0]["boot"]["count"]["total"] == 2 and doc["daily"][1]["clone"]["count"]["total"] == 1

    section = client.get(f"/api/v1/summary/boot/count?from={day(-1)}").json()
    assert set(section) == {"boot", "daily"} and set(section["boot"]) == {"count"}
    assert client.get("/summary/tag/project").json()["tag"] == {"project": {"x": 2, "y": 1, "total": 3}}
    assert client.get("/api/v1/summary/clone").json()["clone"]["count"]["total"] == 1


@pytest.mark.parametrize("query", ["from=2016-7-1", "from=yesterday", "to=2016-13-45", f"from={day()}&to={day(-1)}",
                                   f"from={day(1)}&to={day(2)}", "from=2000-01-01"])
def test_summary_bad_dates_are_400(client: TestClient, query: str) -> None:
    expect_json(client.get(f"/api/v1/summary?{query}"), False, 400)
    expect_json(client.get(f"/api/v1/summary/boot?{query}"), False, 400)


@pytest.mark.parametrize("path", ["/api/v1/summary/nope", "/api/v1/summary/boot/nope", "/summary/x/y"])
def test_summary_unknown_sections_are_404(client: TestClient, path: str) -> None:
    expect_json(client.get(path), False, 404)


def test_dashboard_stats(client: TestClient, r: redis.Redis, make_client: MakeClient) -> None:
    ready(r, "pool1", "a1")
    assert client.get("/dashboard/stats/vmpooler/pool").json() == {"pool1": {"size": 5, "ready": 1},
                                                                  "pool2": {"size": 10, "ready": 0}}
    assert client.get("/dashboard/stats/vmpooler/pool/?history=1").json()["pool1"] == {
        "size": 5, "ready": 1, "history": [1]}
    pools = "providers: {dummy: {}}\n" \
            "pools:\n - {name: centos-6-x86_64, size: 1}\n - {name: centos-7-x86_64, size: 1}\n" \
            " - {name: debian-7-x86_64, size: 1}\n - {name: solo, size: 1}\n"
    running(r, "centos-6-x86_64", "c1")
    running(r, "centos-7-x86_64", "c2")
    with make_client(pools=pools) as other:
        assert other.get("/dashboard/stats/vmpooler/running").json() == {
            "centos": {"running": 2}, "debian": {"running": 0}, "solo": {"running": 0}}


def test_root_redirects_to_the_dashboard_page(make_client: MakeClient) -> None:
    with make_client(app="  site_name: '<b>Pooler of Tests</b>'") as client:
        response = client.get("/", follow_redirects=False)
        assert response.status_code == 302 and response.headers["location"] == "/dashboard/"
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<b>Pooler of Tests</b>" in page.text and "<title>Pooler of Tests</title>" in page.text


def test_openapi_document(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    schema = schemathesis.openapi.from_dict(response.json())
    documented = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    served = {(route.method, routing.PREFIX + route.path) for route in (*routing.VERSIONED_ONLY, *routing.API)}
    served |= {(route.method, route.path) for route in (*routing.API, *routing.UNVERSIONED_ONLY)
               if route.path != "/dashboard"}  # only a redirect to /dashboard/
    assert documented == served


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/api/v2/status"), ("POST", "/status/x"),
                                              ("GET", "/api/v1/vm/a/b/c"), ("GET", "/dashboard/nope")])
def test_unknown_routes_are_json_404(client: TestClient, method: str, path: str) -> None:
    expect_json(client.request(method, path), False, 404)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/api/v1/status", "GET, HEAD"), ("PATCH", "/api/v1/vm/x", "GET, PUT, DELETE, POST, HEAD"),
    ("PUT", "/api/v1/token", "GET, POST, HEAD"), ("GET", "/api/v1/vm/x/snapshot", "POST"),
])
def test_wrong_methods_are_json_405_with_allow(client: TestClient, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)
    expect_json(response, False, 405)
    assert response.headers["allow"] == allow


def test_head_is_answered_like_get_without_a_body(client: TestClient) -> None:
    response = client.head("/api/v1/status")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_a_degraded_provider_is_in_healthcheck_and_status(client: TestClient, redis_url: str) -> None:
    def unreachable(report: HealthReport) -> None:
        report.pool_failed("pool1", ProviderUnavailable("dummy: connection refused"))
        report.pool_failed("pool2", ProviderError("dummy: folder vmpooler/pool2 not found"))

    report_health(redis_url, A8_POOLS, unreachable)
    document = schemathesis.openapi.from_dict(client.get("/api/v1/openapi.json").json())
    response = client.get("/healthcheck")
    verdict = expect_json(response, False, 503)
    document["/healthcheck"]["GET"].validate_response(response)
    dummy = verdict["providers"]["dummy"]
    since, pool_since = dummy["since"], dummy["pools"]["pool2"]["since"]
    assert verdict == {
        "ok": False, "code": "unhealthy", "redis": True, "managers": 1, "heartbeat_age": verdict["heartbeat_age"],
        "reason": f"provider dummy is unreachable since {since}: dummy: connection refused; provider dummy cannot "
                  f"list its VMs for pool pool2 since {pool_since}: dummy: folder vmpooler/pool2 not found",
        "providers": {"dummy": {
            "ok": False, "state": "degraded", "problem": "unreachable", "since": since,
            "reason": "is unreachable: dummy: connection refused",
            "pools": {"pool2": {"problem": "inventory", "since": pool_since,
                                "reason": "cannot list its VMs: dummy: folder vmpooler/pool2 not found"}}}}}
    response = client.get("/api/v1/status")
    document["/status"]["GET"].validate_response(response)
    doc = response.json()
    assert list(doc) == sorted(doc) and doc["providers"] == verdict["providers"]
    # The provider's own problem explains both pools; a full pool needs no explaining.
    for pool in ("pool1", "pool2"):
        assert doc["pools"][pool]["reason"] == f"provider dummy is unreachable since {since}: dummy: connection refused"

    # Another manager working the same provider without trouble does not hide the first one's view...
    report_health(redis_url, A8_POOLS, lambda report: report.pool_read("pool1"), manager="m2")
    assert expect_json(client.get("/healthcheck"), False, 503)["managers"] == 2
    # ...and once the first one can read its pools again, all is well.
    report_health(redis_url, A8_POOLS, lambda report: [report.pool_read(pool) for pool in ("pool1", "pool2")])
    response = client.get("/healthcheck")
    verdict = expect_json(response, True, 200)
    document["/healthcheck"]["GET"].validate_response(response)
    assert (verdict["reason"], verdict["providers"]) == ("healthy", {"dummy": {"ok": True, "state": "ok"}})
    doc = client.get("/api/v1/status").json()
    assert "reason" not in doc["pools"]["pool1"] and doc["providers"] == verdict["providers"]
