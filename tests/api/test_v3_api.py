"""API v3 (today's original, issue 14) on a real Redis: the cases of its own specs (contract B8.1-B8.5) where
they hold for us, and what v3 answers differently from v1, each version keeping its own answer."""

from __future__ import annotations

import datetime

import pytest
import redis
import schemathesis

from tests.api.conftest import PASSWORDS, TOKEN, MakeClient, TestClient
from tests.api.helpers import K, basic, expect_json, expect_unauthorized, make_token, members, ready, running, vm
from tests.api.test_checkout_api import FORMS, checkout
from vmpoolerd.api import routing

V3 = "/api/v3"
DNS = """
dns_configs:
  one: {dns_class: dynamic-dns, domain: one.example.com}
  two: {dns_class: dynamic-dns, domain: two.example.com}
  three: {dns_class: gcp, domain: three.example.com, project: vmpooler-dns}
providers: {dummy: {}}
"""
# B8.1's pools: each with a domain of its own, an alias of one pool and one of all three.
POOLS = DNS + """pools:
  - {name: pool1, alias: [poolone, genericpool], size: 5, dns_plugin: one, provider: dummy}
  - {name: pool2, alias: [genericpool], size: 10, dns_plugin: two, provider: dummy}
  - {name: pool3, alias: genericpool, size: 0, dns_plugin: three, provider: dummy}
"""


@pytest.fixture
def v3(make_client: MakeClient) -> TestClient:
    with make_client(pools=POOLS) as client:
        yield client


def v3_checkout(client: TestClient, form: str, counts: dict[str, int], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return checkout(client, form, counts, headers, prefix=V3)


# Checkout: FQDNs, keyed by the name asked for -----------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_a_vm_is_an_fqdn_of_its_pools_domain(v3: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "a1")
    assert expect_json(v3_checkout(v3, form, {"pool1": 1}), True, 200) == {
        "ok": True, "pool1": {"hostname": "a1.one.example.com"}}


@pytest.mark.parametrize("form", FORMS)
def test_an_alias_is_answered_under_the_alias_in_v3_and_under_the_pool_in_v1(v3: TestClient, r: redis.Redis,
                                                                             form: str) -> None:
    ready(r, "pool1", "a1", "a2")
    assert expect_json(v3_checkout(v3, form, {"poolone": 1}), True, 200)["poolone"]["hostname"].endswith(
        ".one.example.com")
    v1 = expect_json(checkout(v3, form, {"poolone": 1}), True, 200)
    assert list(v1) == ["ok", "pool1"] and "." not in v1["pool1"]["hostname"]


@pytest.mark.parametrize("form", FORMS)
def test_several_pools_each_with_its_own_domain(v3: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "a1", "a2")
    ready(r, "pool2", "b1")
    body = expect_json(v3_checkout(v3, form, {"pool1": 2, "pool2": 1}), True, 200)
    assert list(body) == ["ok", "pool1", "pool2"]
    assert sorted(body["pool1"]["hostname"]) == ["a1.one.example.com", "a2.one.example.com"]
    assert body["pool2"] == {"hostname": "b1.two.example.com"}


def test_an_alias_of_several_pools_mixes_their_domains(v3: TestClient, r: redis.Redis) -> None:
    for pool, host in (("pool1", "a1"), ("pool2", "b1"), ("pool3", "c1")):
        ready(r, pool, host)
    body = expect_json(v3.post(f"{V3}/vm", json={"genericpool": "3"}), True, 200)
    assert sorted(body["genericpool"]["hostname"]) == ["a1.one.example.com", "b1.two.example.com",
                                                      "c1.three.example.com"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("counts", "pool1"), [({"pool1": 1, "pool2": 1}, ["a1"]), ({"pool1": 2, "pool2": 3}, ["a1"]),
                                               ({"pool1": 2, "pool2": 3}, ["a1", "a2"])])
def test_a_short_request_is_503_and_puts_everything_back(v3: TestClient, r: redis.Redis, form: str,
                                                         counts: dict[str, int], pool1: list[str]) -> None:
    ready(r, "pool1", *pool1)
    expect_json(v3_checkout(v3, form, counts), False, 503)
    assert members(r, "ready", "pool1") == set(pool1) and members(r, "running", "pool1") == set()


@pytest.mark.parametrize(("body", "status"), [
    (b"", 404), (b"{}", 404),  # names no pool: the original's 404
    (b'{"pool1": "0"}', 400), (b'{"pool1": 0, "pool2": 1}', 400),  # counts from 1
    (b"{", 400), (b"[]", 400), (b'{"pool1": "x"}', 400), (b'{"pool1": 101}', 400),
    (b'{"poolpoolpool": "1"}', 404),
    (b'{"centos.7": "1"}', 404),  # a name with a dot is a name (B7.24): unknown here, not malformed
])
def test_bad_or_empty_requests(v3: TestClient, r: redis.Redis, body: bytes, status: int) -> None:
    ready(r, "pool1", "a1")
    ready(r, "pool2", "b1")
    expect_json(v3.post(f"{V3}/vm", content=body), False, status)
    assert members(r, "ready", "pool1") == {"a1"}


@pytest.mark.parametrize("form", FORMS)
def test_lifetime_from_a_token_only_with_auth(make_client: MakeClient, r: redis.Redis, form: str) -> None:
    make_token(r, TOKEN)
    ready(r, "pool1", "a1", "a2", "a3")
    with make_client(pools=POOLS) as client:  # auth off: the token means nothing
        expect_json(v3_checkout(client, form, {"pool1": 1}, {"X-AUTH-TOKEN": TOKEN}), True, 200)
    with make_client(pools=POOLS, auth=True) as client:
        expect_json(v3_checkout(client, form, {"pool1": 1}), True, 200)
        host = expect_json(v3_checkout(client, form, {"pool1": 1}, {"X-AUTH-TOKEN": TOKEN}), True, 200)
        expect_unauthorized(v3_checkout(client, form, {"pool1": 1}, {"X-AUTH-TOKEN": "nosuchtoken"}))
    lifetimes = {h: vm(r, h).get("lifetime") for h in members(r, "running", "pool1")}
    assert lifetimes[host["pool1"]["hostname"].split(".")[0]] == "2"
    assert sorted(map(str, lifetimes.values())) == ["2", "None", "None"]


# One VM --------------------------------------------------------------------------------------------

def test_a_running_vms_document(v3: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    r.hset(K.vm("vm1"), mapping={"host": "host1", "tag:tested_by": "rspec"})
    details = expect_json(v3.get(f"{V3}/vm/vm1.one.example.com"), True, 200)["vm1"]
    assert list(details) == ["template", "lifetime", "running", "remaining", "start_time", "end_time", "state",
                             "tags", "ip", "fqdn", "host", "history"][:len(details)]
    assert details["template"] == "pool1" and details["state"] == "running" and details["ip"] == ""
    # The default lifetime counts (the original used 0 for a VM without its own: B7.23).
    assert details["lifetime"] == 24
    start = datetime.datetime.fromisoformat(details["start_time"])
    assert start == datetime.datetime(2016, 7, 25, 10, tzinfo=datetime.UTC)
    assert datetime.datetime.fromisoformat(details["end_time"]) - start == datetime.timedelta(hours=24)
    assert details["remaining"] == pytest.approx(24 - details["running"], abs=0.02)
    assert (details["fqdn"], details["host"]) == ("vm1.one.example.com", "host1") and "domain" not in details
    r.hset(K.vm("vm1"), "lifetime", "2")
    details = expect_json(v3.get(f"{V3}/vm/vm1"), True, 200)["vm1"]
    assert datetime.datetime.fromisoformat(details["end_time"]) - start == datetime.timedelta(hours=2)


def test_any_fqdn_names_the_vm_and_a_malformed_name_is_400(v3: TestClient, r: redis.Redis) -> None:
    ready(r, "pool2", "vm2")
    details = expect_json(v3.get(f"{V3}/vm/vm2.anywhere.example.org"), True, 200)["vm2"]
    assert details["state"] == "ready" and "remaining" not in details and details["fqdn"] == "vm2.two.example.com"
    expect_json(v3.get(f"{V3}/vm/nosuchvm"), False, 404)
    expect_json(v3.get(f"{V3}/vm/a;b"), False, 400)
    expect_json(v3.get("/api/v1/vm/vm2.anywhere.example.org"), False, 404)  # v1: only its configured domain


def test_put_delete_disk_and_snapshot_by_fqdn(v3: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    fqdn = f"{V3}/vm/vm1.one.example.com"
    expect_json(v3.put(fqdn, content=b""), True, 200)  # an empty body changes nothing (v1: 400)
    expect_json(v3.put("/api/v1/vm/vm1", content=b""), False, 400)
    expect_json(v3.put(fqdn, json={"tags": {"url": "http://example.com/x"}}), True, 200)
    expect_json(v3.put(fqdn, json={"lifetime": 0}), False, 400)
    assert vm(r, "vm1")["tag:url"] == "http://example.com/x" and "lifetime" not in vm(r, "vm1")
    assert expect_json(v3.post(f"{fqdn}/disk/8"), True, 202) == {"ok": True, "vm1": {"disk": "+8gb"}}
    assert len(expect_json(v3.post(f"{fqdn}/snapshot"), True, 202)["vm1"]["snapshot"]) == 32
    expect_json(v3.post(f"{fqdn}/snapshot/nosuchsnapshot"), False, 404)
    expect_json(v3.delete(fqdn), True, 200)
    assert members(r, "completed", "pool1") == {"vm1"}
    expect_json(v3.delete(fqdn), False, 404)


def test_tokens_in_v3_keep_our_rules(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN, user="admin")
    make_token(r, TOKEN, "admin")
    admin = basic("admin", PASSWORDS["admin"])
    with make_client(pools=POOLS, auth=True) as client:
        token = expect_json(client.post(f"{V3}/token", headers=admin), True, 200)["token"]
        shown = expect_json(client.get(f"{V3}/token/{TOKEN}", headers=admin), True, 200)[TOKEN]
        assert shown["user"] == "admin" and shown["vms"] == {"running": ["vm1"]}
        expect_json(client.delete(f"{V3}/token/{token}", headers=admin), True, 200)
        expect_json(client.delete(f"{V3}/token/{token}", headers=admin), False, 404)  # not 401 (B7.26)


# Status ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "sections"), [
    ("", {"boot", "capacity", "clone", "pools", "queue", "status"}), ("?view", None),
    ("?view=", {"status"}), ("?view=capacity", {"capacity", "status"}),
    ("?view=pools,queue", {"pools", "queue", "status"}), ("?view=clone,boot,bogus", {"clone", "boot", "status"}),
])
def test_status_views(v3: TestClient, query: str, sections: set[str] | None) -> None:
    doc = expect_json_any(v3.get(f"{V3}/status{query}"))
    assert set(doc) == (sections or {"boot", "capacity", "clone", "pools", "queue", "status"})
    assert list(doc) == sorted(doc)


def expect_json_any(response):  # type: ignore[no-untyped-def]
    assert response.status_code == 200 and response.headers["content-type"] == "application/json", response.text
    return response.json()


def test_status_pools_last_boot_and_sizes(v3: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    running(r, "pool2", "b1")
    r.sadd(K.pending("pool2"), "p1")
    r.hset(K.lastboot(), "pool1", "2026-03-19 10:00:00 -0700")
    r.hset(K.pool_settings("poolsize"), "pool2", "3")  # set through the pool configuration API
    doc = expect_json_any(v3.get(f"{V3}/status"))
    assert doc["pools"] == {
        "pool1": {"ready": 1, "running": 0, "pending": 0, "max": 5, "lastBoot": "2026-03-19 10:00:00 -0700",
                  "alias": ["poolone", "genericpool"]},
        "pool2": {"ready": 0, "running": 1, "pending": 1, "max": 3, "lastBoot": "", "alias": ["genericpool"]},
        "pool3": {"ready": 0, "running": 0, "pending": 0, "max": 0, "lastBoot": "", "alias": ["genericpool"]}}
    # A size-0 pool is meant to be empty; v1 shows the same sizes.
    assert doc["status"]["empty"] == ["pool2"] and doc["queue"]["requested"] == 0
    assert doc["capacity"] == {"current": 1, "total": 8, "percent": 12.5}
    assert expect_json_any(v3.get("/api/v1/status"))["pools"]["pool2"]["max"] == 3


def test_poolstat_and_totalrunning(v3: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1", "a2")
    running(r, "pool1", "r1")
    running(r, "pool2", "r2")
    for query in ("", "?pool=", "?pool=nosuchpool"):
        assert expect_json_any(v3.get(f"{V3}/poolstat{query}")) == {"pools": {}}
    one = {"pool1": {"max": 5, "alias": ["poolone", "genericpool"], "ready": 2}}
    assert expect_json_any(v3.get(f"{V3}/poolstat?pool=pool1")) == {"pools": one}
    assert expect_json_any(v3.get(f"{V3}/poolstat?pool=poolone")) == {"pools": one}
    two = expect_json_any(v3.get(f"{V3}/poolstat?pool=pool1,pool2"))["pools"]
    assert list(two) == ["pool1", "pool2"] and two["pool2"] == {"max": 10, "alias": ["genericpool"], "ready": 0}
    assert expect_json_any(v3.get(f"{V3}/totalrunning")) == {"running": 2}


def test_full_config_masks_every_secret(make_client: MakeClient, r: redis.Redis) -> None:
    make_token(r, TOKEN)
    secret_pools = POOLS.replace("providers: {dummy: {}}",
                                 "providers:\n  dummy: {}\n  vc: {provider_class: vsphere, server: vc1, "
                                 "password: vc-s3cret}")
    with make_client(pools=secret_pools, auth=True) as client:
        expect_unauthorized(client.get(f"{V3}/full_config"))
        response = client.get(f"{V3}/full_config", headers={"X-AUTH-TOKEN": TOKEN})
    body = expect_json_any(response)
    assert body["status"] == {"ok": True} and "vc-s3cret" not in response.text and "pbkdf2" not in response.text
    full = body["full_config"]
    assert full["providers"]["vc"]["password"] == "***" and full["auth"]["users"] == ["admin", "jdoe"]
    assert [pool["domain"] for pool in full["pools"]] == ["one.example.com", "two.example.com", "three.example.com"]


# Routing and the document -------------------------------------------------------------------------

def test_the_v3_document_lists_exactly_the_v3_routes(v3: TestClient) -> None:
    response = v3.get(f"{V3}/openapi.json")
    schema = schemathesis.openapi.from_dict(expect_json_any(response))
    documented = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert documented == {(route.method, V3 + route.path) for route in routing.V3}


def test_wrong_methods_and_unknown_v3_routes(v3: TestClient) -> None:
    response = v3.request("PATCH", f"{V3}/poolstat")
    expect_json(response, False, 405)
    assert response.headers["allow"] == "GET, HEAD"
    expect_json(v3.get(f"{V3}/nowhere"), False, 404)
    expect_json(v3.get("/api/v2/status"), False, 404)
