"""API v3's pool configuration routes (contract B2.10, the original's config_spec B8.6) on a real Redis:
changes are stored in the original's keys, 201 when something changed and 200 when nothing did, 405 while
`experimental_features` is off, a token needed with auth configured, and alias names refused (B7.21)."""

from __future__ import annotations

import pytest
import redis

from tests.api.conftest import TOKEN, MakeClient, TestClient, config_text
from tests.api.helpers import K, expect_json, expect_unauthorized, make_token
from tests.conftest import make_config
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app
from vmpoolerd.prometheus import Registry, Tee

ON = "  experimental_features: true"
POOLS = """
providers: {dummy: {}}
pools:
  - {name: pool1, alias: [poolone], size: 5, template: templates/pool1, clone_target: default_cluster}
  - {name: pool2, size: 10, template: templates/pool2}
"""


@pytest.fixture
def on(make_client: MakeClient) -> TestClient:
    with make_client(pools=POOLS, app=ON) as client:
        yield client


def sizes(r: redis.Redis) -> dict[str, str]:
    return dict(r.hgetall(K.pool_settings("poolsize")))  # type: ignore[arg-type]


def test_pool_size_change_reset_and_validation(on: TestClient, r: redis.Redis) -> None:
    expect_json(on.post("/api/v3/config/poolsize", json={"pool1": "2"}), True, 201)
    expect_json(on.post("/api/v3/config/poolsize", json={"pool1": 2}), True, 200)  # unchanged
    expect_json(on.post("/api/v3/config/poolsize", json={"pool1": "2", "pool2": "4"}), True, 201)
    assert sizes(r) == {"pool1": "2", "pool2": "4"}
    for body, names in (({"pool10": "1"}, ["pool10"]), ({"pool1": "four"}, ["pool1"]), ({"pool1": "-1"}, ["pool1"]),
                        ({"poolone": "1", "pool2": "3"}, ["poolone"])):  # an alias is not a pool (B7.21)
        refused = expect_json(on.post("/api/v3/config/poolsize", json=body), False, 400)
        assert refused["not_configured"] == names
    assert sizes(r) == {"pool1": "2", "pool2": "4"}  # a refused request changed nothing
    assert expect_json(on.delete("/api/v3/config/poolsize/pool1"), True, 201) == {
        "ok": True, "pool_size_before_reset": 2, "pool_size_before_overrides": 5}
    assert sizes(r) == {"pool2": "4"} and r.smembers(K.undo_override("size")) == {"pool1"}
    assert expect_json(on.delete("/api/v3/config/poolsize/pool1"), True, 200) == {
        "ok": True, "pool_size_before_reset": 5, "pool_size_before_overrides": 5}
    expect_json(on.delete("/api/v3/config/poolsize/pool10"), False, 404)


def test_pool_template_change_reset_and_validation(on: TestClient, r: redis.Redis) -> None:
    expect_json(on.post("/api/v3/config/pooltemplate", json={"pool1": "templates/new_template"}), True, 201)
    expect_json(on.post("/api/v3/config/pooltemplate", json={"pool1": "templates/new_template"}), True, 200)
    assert r.hget(K.pool_settings("template"), "pool1") == "templates/new_template"
    for bad in ("template1", "/templates/t", "templates/t/", "", 7):
        refused = expect_json(on.post("/api/v3/config/pooltemplate", json={"pool1": bad}), False, 400)
        assert refused["bad_templates"] == ["pool1"]
    refused = expect_json(on.post("/api/v3/config/pooltemplate", json={"pool2": "t/x", "pool3": "t/y"}), False, 400)
    assert refused["bad_templates"] == ["pool3"]
    assert expect_json(on.delete("/api/v3/config/pooltemplate/pool1"), True, 201) == {
        "ok": True, "template_before_reset": "templates/new_template", "template_before_overrides": "templates/pool1"}
    assert r.smembers(K.undo_override("template")) == {"pool1"} and not r.exists(K.pool_settings("template"))
    expect_json(on.delete("/api/v3/config/pooltemplate/pool1"), True, 200)
    expect_json(on.delete("/api/v3/config/pooltemplate/pool3"), False, 404)


def test_clone_target_and_reset(on: TestClient, r: redis.Redis) -> None:
    expect_json(on.post("/api/v3/config/clonetarget", json={"pool1": "cluster2", "pool2": "cluster2"}), True, 201)
    expect_json(on.post("/api/v3/config/clonetarget", json={"pool1": "cluster2"}), True, 200)
    expect_json(on.post("/api/v3/config/clonetarget", json={"pool1": "default_cluster"}), True, 201)
    assert expect_json(on.post("/api/v3/config/clonetarget", json={"pool9": "c"}), False, 400)["bad_templates"] == [
        "pool9"]
    assert r.hgetall(K.pool_settings("clone_target")) == {"pool1": "default_cluster", "pool2": "cluster2"}
    expect_json(on.post("/api/v3/poolreset", json={"pool1": "1"}), True, 201)
    assert expect_json(on.post("/api/v3/poolreset", json={"poolone": "1"}), False, 400)["bad_pools"] == ["poolone"]
    for body in (b"", b"{", b"[]"):  # malformed: 400 (the original answered 500, B7.19)
        expect_json(on.post("/api/v3/poolreset", content=body), False, 400)
    assert r.smembers(K.pool_reset()) == {"pool1"}


def test_get_config_shows_the_settings_the_manager_runs(on: TestClient, r: redis.Redis) -> None:
    expect_json(on.post("/api/v3/config/poolsize", json={"pool2": "3"}), True, 201)
    r.hset(K.prepared("template"), mapping={"pool1": "templates/pool1", "pool2": "templates/old"})
    response = on.get("/api/v3/config")
    assert response.status_code == 200
    pools = response.json()["pool_configuration"]
    assert response.json()["status"] == {"ok": True}
    assert [(p["name"], p["size"], p["template"], p["template_ready"]) for p in pools] == [
        ("pool1", 5, "templates/pool1", True), ("pool2", 3, "templates/pool2", False)]
    assert pools[0]["alias"] == ["poolone"] and pools[0]["clone_target"] == "default_cluster"


@pytest.mark.parametrize(("method", "path", "body", "written"), [
    ("POST", "/api/v3/config/poolsize", {"pool1": "1"}, K.pool_settings("poolsize")),
    ("DELETE", "/api/v3/config/poolsize/pool1", None, K.undo_override("size")),
    ("POST", "/api/v3/config/pooltemplate", {"pool1": "t/x"}, K.pool_settings("template")),
    ("DELETE", "/api/v3/config/pooltemplate/pool1", None, K.undo_override("template")),
    ("POST", "/api/v3/config/clonetarget", {"pool1": "c"}, K.pool_settings("clone_target")),
    ("POST", "/api/v3/poolreset", {"pool1": "1"}, K.pool_reset()),
])
def test_off_by_default_and_behind_a_token(make_client: MakeClient, r: redis.Redis, method: str, path: str,
                                           body: dict[str, str] | None, written: str) -> None:
    make_token(r, TOKEN)
    with make_client(pools=POOLS) as client:
        response = client.request(method, path, json=body)
        assert expect_json(response, False, 405)["code"] == "not_configured" and response.headers["allow"] == ""
    with make_client(pools=POOLS, app=ON, auth=True) as client:
        expect_unauthorized(client.request(method, path, json=body))
        expect_unauthorized(client.request(method, path, json=body, headers={"X-AUTH-TOKEN": "nosuchtoken"}))
        assert not r.exists(written)  # refused: nothing written
        assert client.request(method, path, json=body, headers={"X-AUTH-TOKEN": TOKEN}).status_code in (200, 201)
    assert r.exists(written)


def test_the_size_set_through_the_api_is_the_one_every_view_shows(redis_url: str) -> None:
    prometheus = Registry()
    app = create_app(make_config(config_text(redis_url, pools=POOLS, app=ON)),
                     metrics=Tee(NullMetrics(), prometheus), prometheus=prometheus)
    with TestClient(app) as client:
        expect_json(client.post("/api/v3/config/poolsize", json={"pool1": "2"}), True, 201)
        assert client.get("/api/v3/status").json()["pools"]["pool1"]["max"] == 2
        assert client.get("/dashboard/stats/vmpooler/pool").json()["pool1"]["size"] == 2
        assert client.get("/dashboard/stats/vmpooler/pool").json()["pool2"]["size"] == 10  # no override: the file's
        expect_json(client.post("/api/v3/config/poolsize", json={"pool10": "1"}), False, 400)
        scraped = client.get("/metrics").text
        assert 'vmpooler_api_events_total{event="config.invalid",pool="pool10"} 1.0' in scraped
        assert 'vmpooler_pool_size{pool="pool1"} 2.0' in scraped and 'vmpooler_pool_size{pool="pool2"} 10.0' in scraped
