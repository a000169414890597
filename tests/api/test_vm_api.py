"""`/vm/<hostname>`: details, changes, return, disk and snapshots (the original's A8.3 specs, with the
A7 holes closed: a token-owned VM needs its own token)."""

from __future__ import annotations

import pytest
import redis

from tests.api.conftest import TOKEN, MakeClient, TestClient
from tests.api.helpers import K, expect_json, expect_unauthorized, make_token, members, ready, running, vm

OTHER = "zyxwvutsrqponmlkjihgfedcba543210"


@pytest.fixture
def tokens(r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    make_token(r, OTHER, "eve")


# GET -----------------------------------------------------------------------------------------------

def test_details_of_a_running_vm(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    r.hset(K.vm("vm1"), mapping={"tag:tested_by": "rspec", "snapshot:snap1": "2016-07-25 11:00:00 +0000",
                                 "disk": "+8gb:+16gb", "lifetime": "3"})
    body = expect_json(client.get("/api/v1/vm/vm1"), True, 200)
    details = body["vm1"]
    assert list(details) == ["template", "lifetime", "running", "state", "tags", "snapshots", "disk", "ip"]
    assert details["template"] == "pool1" and details["lifetime"] == 3 and details["state"] == "running"
    assert details["tags"] == {"tested_by": "rspec"} and details["snapshots"] == ["snap1"]
    assert details["disk"] == ["+8gb", "+16gb"] and details["running"] > 0


def test_ready_vm_and_default_lifetime(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool2", "vm2")
    details = expect_json(client.get("/vm/vm2"), True, 200)["vm2"]
    assert details["state"] == "ready" and details["lifetime"] == 24 and "running" not in details


def test_fqdn_is_shortened_when_it_ends_in_the_domain(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(app="  domain: company.com") as client:
        body = expect_json(client.get("/api/v1/vm/vm1.company.com"), True, 200)
        assert body["vm1"]["domain"] == "company.com"
        expect_json(client.get("/api/v1/vm/vm1.other.com"), False, 404)


@pytest.mark.parametrize("host", ["nosuchvm", "a b", "vm1;x", "..", "x" * 64, "y" * 300, "%00", "vm1.company.com"])
def test_unknown_or_odd_hostnames_are_404(client: TestClient, r: redis.Redis, host: str) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.get(f"/api/v1/vm/{host}"), False, 404)


# PUT -----------------------------------------------------------------------------------------------

def test_put_tags(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"tested_by": "rspec", "empty": ""}}), True, 200)
    assert vm(r, "vm1")["tag:tested_by"] == "rspec" and "tag:empty" not in vm(r, "vm1")
    day_stats = r.keys(K.tag_stats("*"))
    assert len(day_stats) == 1 and r.hget(day_stats[0], "vm1:tested_by") == "rspec"


def test_put_on_unknown_vm_is_404_before_the_body_is_read(client: TestClient) -> None:
    expect_json(client.put("/api/v1/vm/nosuchvm", content=b"{not json"), False, 404)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'"x"', b'{"tags": "x"}', b'{"foo": 1}',
                                  b'{"lifetime": "0"}', b'{"lifetime": -1}', b'{"lifetime": "x"}',
                                  b'{"lifetime": "' + b"9" * 5000 + b'"}', b'{"tags": {"a b": "x"}}',
                                  b'{"tags": {"t": {"nested": 1}}}', b'{"tags": {"t": "' + b"x" * 300 + b'"}}'])
def test_put_bad_bodies_are_400_and_write_nothing(client: TestClient, r: redis.Redis, body: bytes) -> None:
    running(r, "pool1", "vm1")
    before = vm(r, "vm1")
    expect_json(client.put("/api/v1/vm/vm1", content=body), False, 400)
    assert vm(r, "vm1") == before


def test_tag_outside_allowed_tags_is_400(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(app="  allowed_tags: [created_by]") as client:
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"created_by": "me", "url": "x"}}), False, 400)
        assert "tag:created_by" not in vm(r, "vm1")
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"created_by": "me"}}), True, 200)


def test_tagfilter(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(app="tagfilter:\n  url: '(.*)\\/'") as client:
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"url": "foo.com/something.html"}}), True, 200)
        assert vm(r, "vm1")["tag:url"] == "foo.com"
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"url": "foo.local"}}), True, 200)
        assert vm(r, "vm1")["tag:url"] == "foo.local"


def test_lifetime_without_auth(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.put("/api/v1/vm/vm1", json={"lifetime": "1"}), True, 200)
    assert vm(r, "vm1")["lifetime"] == "1"


@pytest.mark.usefixtures("tokens")
def test_lifetime_with_auth_needs_the_owner_token(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    expect_unauthorized(auth_client.put("/api/v1/vm/vm1", json={"lifetime": "4"}))
    expect_unauthorized(auth_client.put("/api/v1/vm/vm1", json={"lifetime": "4"},
                                        headers={"X-AUTH-TOKEN": "nosuchtoken"}))
    expect_unauthorized(auth_client.put("/api/v1/vm/vm1", json={"lifetime": "4"}, headers={"X-AUTH-TOKEN": OTHER}))
    assert "lifetime" not in vm(r, "vm1")
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"lifetime": "4"}, headers={"X-AUTH-TOKEN": TOKEN}),
                True, 200)
    assert vm(r, "vm1")["lifetime"] == "4"


@pytest.mark.usefixtures("tokens")
def test_lifetime_of_an_unowned_vm_with_any_valid_token(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"lifetime": 3}, headers={"X-AUTH-TOKEN": OTHER}), True, 200)
    assert vm(r, "vm1")["lifetime"] == "3"


def test_lifetime_over_the_upper_limit_is_400(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(app="  max_lifetime_upper_limit: 48") as client:
        expect_json(client.put("/api/v1/vm/vm1", json={"lifetime": 49}), False, 400)
        expect_json(client.put("/api/v1/vm/vm1", json={"lifetime": 48}), True, 200)


# DELETE --------------------------------------------------------------------------------------------

def test_return_a_running_vm(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.delete("/api/v1/vm/vm1"), True, 200)
    assert members(r, "completed", "pool1") == {"vm1"} and members(r, "running", "pool1") == set()
    assert not r.hexists(K.active("pool1"), "vm1")
    assert vm(r, "vm1")["template"] == "pool1"  # kept until the manager destroys it


def test_return_unknown_or_not_running_is_404(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "vm1")
    expect_json(client.delete("/api/v1/vm/nosuchvm"), False, 404)
    expect_json(client.delete("/api/v1/vm/vm1"), False, 404)
    expect_json(client.delete("/api/v1/vm/" + "x" * 300), False, 404)
    assert members(r, "ready", "pool1") == {"vm1"}


def test_return_by_fqdn(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(app="  domain: company.com") as client:
        expect_json(client.delete("/vm/vm1.company.com"), True, 200)


def test_return_with_auth_of_a_vm_without_token(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(auth_client.delete("/api/v1/vm/vm1"), True, 200)


@pytest.mark.usefixtures("tokens")
def test_return_of_a_token_vm_needs_that_token(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    expect_unauthorized(auth_client.delete("/api/v1/vm/vm1"))
    expect_unauthorized(auth_client.delete("/api/v1/vm/vm1", headers={"X-AUTH-TOKEN": OTHER}))
    assert members(r, "running", "pool1") == {"vm1"}
    expect_json(auth_client.delete("/api/v1/vm/vm1", headers={"X-AUTH-TOKEN": TOKEN}), True, 200)


# Disk and snapshots ------------------------------------------------------------------------------

def test_disk(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    body = expect_json(client.post("/api/v1/vm/vm1/disk/8"), True, 202)
    assert body == {"ok": True, "vm1": {"disk": "+8gb"}}
    assert r.smembers(K.disk_tasks()) == {"vm1:8"}


@pytest.mark.parametrize(("host", "size", "status"), [("vm1", "0", 400), ("vm1", "-1", 400), ("vm1", "x", 400),
                                                       ("vm1", "99999", 400), ("nosuchvm", "8", 404)])
def test_bad_disk_requests(client: TestClient, r: redis.Redis, host: str, size: str, status: int) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.post(f"/api/v1/vm/{host}/disk/{size}"), False, status)
    assert not r.exists(K.disk_tasks())


def test_unversioned_disk_takes_post_and_put(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    expect_json(client.post("/vm/vm1/disk/8"), True, 202)
    expect_json(client.put("/vm/vm1/disk/16"), True, 202)
    assert r.smembers(K.disk_tasks()) == {"vm1:8", "vm1:16"}
    expect_json(client.put("/api/v1/vm/vm1/disk/16"), False, 405)


def test_snapshot_and_revert(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    body = expect_json(client.post("/api/v1/vm/vm1/snapshot"), True, 202)
    name = body["vm1"]["snapshot"]
    assert len(name) == 32 and r.smembers(K.snapshot_tasks()) == {f"vm1:{name}"}
    # Not taken yet by the manager: nothing to revert to.
    expect_json(client.post(f"/api/v1/vm/vm1/snapshot/{name}"), False, 404)
    r.hset(K.vm("vm1"), f"snapshot:{name}", "2016-07-25 11:00:00 +0000")
    assert expect_json(client.post(f"/api/v1/vm/vm1/snapshot/{name}"), True, 202) == {"ok": True}
    assert r.smembers(K.revert_tasks()) == {f"vm1:{name}"}
    expect_json(client.post("/api/v1/vm/nosuchvm/snapshot"), False, 404)


@pytest.mark.usefixtures("tokens")
def test_disk_and_snapshots_with_auth(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    r.hset(K.vm("vm1"), "snapshot:snap1", "2016-07-25 11:00:00 +0000")
    for path in ("/api/v1/vm/vm1/disk/8", "/api/v1/vm/vm1/snapshot", "/api/v1/vm/vm1/snapshot/snap1"):
        expect_unauthorized(auth_client.post(path))
        expect_unauthorized(auth_client.post(path, headers={"X-AUTH-TOKEN": OTHER}))
        expect_json(auth_client.post(path, headers={"X-AUTH-TOKEN": TOKEN}), True, 202)
    # 401 comes before the VM's existence is revealed; with a token, unknown things are 404.
    expect_unauthorized(auth_client.post("/api/v1/vm/nosuchvm/snapshot"))
    expect_json(auth_client.post("/api/v1/vm/nosuchvm/snapshot", headers={"X-AUTH-TOKEN": TOKEN}), False, 404)
    expect_json(auth_client.post("/api/v1/vm/vm1/snapshot/nosuchsnap", headers={"X-AUTH-TOKEN": TOKEN}),
                False, 404)
