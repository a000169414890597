"""`/api/v3/ondemandvm` against a real Redis, in the original's spec set-up (contract B8.7: pools of size 0,
backend weights, aliases): codes and bodies, what each request writes (in the original's keys, so that its
daemons can take the requests over), and that a refused request writes nothing. The managers' part is in
tests/manager/test_ondemand.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from tests.api.conftest import TOKEN, MakeClient
from tests.api.helpers import expect_json, expect_unauthorized, make_token, running
from vmpooler_core.keys import Keys

K = Keys()
URL = "/api/v3/ondemandvm"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
# B8.7's fixture, with our rule that an alias is not also a pool's name: `weighted` has pool1 (weight 5)
# and pool2 (weight 0, never chosen).
POOLS = """
providers: {dummy: {}}
pools:
  - {name: pool1, size: 0, clone_target: compute1, alias: [poolone, weighted]}
  - {name: pool2, size: 0, clone_target: compute2, alias: [weighted]}
  - {name: pool3, size: 0, clone_target: compute1}
"""
APP = "  domain: example.com\n  max_ondemand_instances_per_request: 50\n  backend_weight: {compute1: 5, compute2: 0}"


@pytest.fixture
def od(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client(pools=POOLS, app=APP) as client:
        yield client


@pytest.fixture
def od_auth(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client(auth=True, pools=POOLS, app=APP) as client:
        yield client


def requested(r: redis.Redis, request_id: str) -> str:
    return str(r.hget(K.ondemand_request(request_id), "requested"))


def nothing_written(r: redis.Redis) -> None:
    assert not r.keys("vmpooler__odrequest__*") and not r.zcard(K.ondemand_new())


def test_post_makes_a_request_in_the_originals_keys(od: TestClient, r: redis.Redis) -> None:
    before = int(time.time())
    body = expect_json(od.post(URL, json={"pool1": "1"}), True, 201)
    assert set(body) == {"ok", "request_id"} and UUID.fullmatch(body["request_id"])
    [(request_id, score)] = r.zrange(K.ondemand_new(), 0, -1, withscores=True)
    assert request_id == body["request_id"] and before <= score <= time.time() and score == int(score)
    assert requested(r, request_id) == "pool1:pool1:1"
    assert not r.hexists(K.ondemand_request(request_id), "token:token"), "auth off: no token"
    # /status counts it (the original's `queue.requested` read keys that never exist: always 0).
    assert od.get("/api/v3/status").json()["queue"]["requested"] == 1


@pytest.mark.parametrize(("body", "parts"), [
    ({"poolone": "1"}, "poolone:pool1:1"),
    ({"weighted": 3}, "weighted:pool1:3"),  # pool2's clone target weighs 0: never chosen
    ({"pool3": "2", "pool1": "1"}, "pool3:pool3:2,pool1:pool1:1"),
])
def test_aliases_and_backend_weights(od: TestClient, r: redis.Redis, body: dict[str, object], parts: str) -> None:
    request_id = expect_json(od.post(URL, json=body), True, 201)["request_id"]
    assert requested(r, request_id) == parts


def test_the_path_form(od: TestClient, r: redis.Redis) -> None:
    request_id = expect_json(od.post(f"{URL}/pool1+poolone+pool1"), True, 201)["request_id"]
    assert requested(r, request_id) == "pool1:pool1:2,poolone:pool1:1"


def test_a_chosen_request_id_and_its_reuse(od: TestClient, r: redis.Redis) -> None:
    body = {"pool1": "1", "request_id": "1234"}
    assert expect_json(od.post(URL, json=body), True, 201) == {"ok": True, "request_id": "1234"}
    again = expect_json(od.post(URL, json={"pool3": "1", "request_id": "1234"}), False, 409)
    assert again["request_id"] == "1234" and again["message"] == "request_id '1234' has already been created"
    assert requested(r, "1234") == "pool1:pool1:1" and r.zcard(K.ondemand_new()) == 1, "the first one unchanged"


@pytest.mark.parametrize(("body", "status", "field", "value"), [
    ({"pool4": "1"}, 404, "bad_templates", ["pool4"]),
    ({"pool1": "1", "pool4": "1", "nope": 2}, 404, "bad_templates", ["pool4", "nope"]),
    ({"pool1": "51"}, 403, "message", "requested amount of instances exceeds the maximum 50"),
    ({"pool1": "0"}, 400, "code", "invalid_request"),
    ({"pool1": "two"}, 400, "code", "invalid_request"),
    ({"request_id": "x"}, 400, "code", "invalid_request"),  # asks for nothing
    ({"pool1": "1", "request_id": "a:b"}, 400, "code", "invalid_request"),  # would break the task members
    ({"pool1": "1", "request_id": "a__b"}, 400, "code", "invalid_request"),  # would break key names
    ({"pool1": "1", "request_id": 7}, 400, "code", "invalid_request"),
    (["pool1"], 400, "code", "invalid_request"),
])
def test_refused_requests_write_nothing(od: TestClient, r: redis.Redis, body: object, status: int, field: str,
                                        value: object) -> None:
    answer = expect_json(od.post(URL, json=body), False, status)
    assert answer[field] == value
    nothing_written(r)


def test_unparsable_json_is_the_originals_400(od: TestClient, r: redis.Redis) -> None:
    for body in (b'{"pool1":"1}', b""):
        answer = expect_json(od.post(URL, content=body), False, 400)
        assert answer["message"] == "JSON payload could not be parsed" and answer["code"] == "invalid_request"
    assert expect_json(od.post(f"{URL}/pool1+"), False, 400)["code"] == "invalid_request"
    nothing_written(r)


def test_with_auth_a_token_is_needed_and_recorded(od_auth: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    expect_unauthorized(od_auth.post(URL, json={"pool1": "1"}))
    expect_unauthorized(od_auth.post(URL, json={"pool1": "1"}, headers={"X-AUTH-TOKEN": "nosuchtoken"}))
    expect_unauthorized(od_auth.post(URL, content=b'{"pool1":'))  # the token first, as the original
    expect_unauthorized(od_auth.post(f"{URL}/nosuchpool"))
    nothing_written(r)
    request_id = expect_json(od_auth.post(URL, json={"pool1": "1"}, headers={"X-AUTH-TOKEN": TOKEN}), True,
                             201)["request_id"]
    stored = r.hgetall(K.ondemand_request(request_id))
    assert stored["token:token"] == TOKEN and stored["token:user"] == "jdoe"


# GET and DELETE on requests as the original writes them (its spec helpers' data) ------------------

def original_request(r: redis.Redis, request_id: str, parts: str, token: str | None = None) -> None:
    """What the original's API writes for a request (create_ondemand_request_for_test)."""
    r.zadd(K.ondemand_new(), {request_id: int(time.time())})
    r.hset(K.ondemand_request(request_id), "requested", parts)
    if token:
        r.hset(K.ondemand_request(request_id), mapping={"token:token": token, "token:user": "jdoe"})


def original_vm(r: redis.Redis, host: str, request_id: str, pool: str, alias: str) -> None:
    """A VM the original's manager delivered to a request (create_ondemand_vm)."""
    running(r, pool, host)
    r.hset(K.vm(host), mapping={"request_id": request_id, "pool_alias": alias})
    r.sadd(K.ondemand_vms(request_id, alias, pool), host)


def test_get_an_unknown_request(od: TestClient) -> None:
    for request_id in ("nosuch", "not:an:id"):
        answer = expect_json(od.get(f"{URL}/{request_id}"), False, 404)
        assert answer["message"] == f"no request found for request_id '{request_id}'"


def test_get_while_waiting_counts_per_alias(od: TestClient, r: redis.Redis) -> None:
    original_request(r, "r1", "pool1:pool1:1")
    assert expect_json(od.get(f"{URL}/r1"), True, 202) == {
        "ok": True, "request_id": "r1", "ready": False, "pool1": {"ready": "0", "pending": "1"}}
    original_request(r, "r2", "weighted:pool1:2,weighted:pool2:1,pool3:pool3:1")
    original_vm(r, "vm1", "r2", "pool2", "weighted")
    assert expect_json(od.get(f"{URL}/r2"), True, 202) == {
        "ok": True, "request_id": "r2", "ready": False, "weighted": {"ready": "1", "pending": "2"},
        "pool3": {"ready": "0", "pending": "1"}}


def test_get_when_ready_gives_fqdns(od: TestClient, r: redis.Redis) -> None:
    original_request(r, "r1", "poolone:pool1:2")
    for host in ("vm1", "vm2"):
        original_vm(r, host, "r1", "pool1", "poolone")
    r.hset(K.ondemand_request("r1"), "status", "ready")
    answer = expect_json(od.get(f"{URL}/r1"), True, 200)
    assert answer == {"ok": True, "request_id": "r1", "ready": True,
                      "poolone": {"hostname": ["vm1.example.com", "vm2.example.com"]}}


@pytest.mark.parametrize(("status", "message"), [
    ("deleted", "The request has been deleted"),
    ("failed", "The request failed to provision instances within the configured ondemand_request_ttl '5'"),
])
def test_get_a_closed_request(od: TestClient, r: redis.Redis, status: str, message: str) -> None:
    original_request(r, "r1", "pool1:pool1:1")
    r.hset(K.ondemand_request("r1"), "status", status)
    assert expect_json(od.get(f"{URL}/r1"), True, 200) == {"ok": True, "request_id": "r1", "ready": False,
                                                          "message": message}


def test_delete_returns_the_vms_delivered(od: TestClient, r: redis.Redis) -> None:
    assert expect_json(od.delete(f"{URL}/r1"), False, 404)["message"] == "no request found for request_id 'r1'"
    original_request(r, "r1", "pool1:pool1:2")
    original_vm(r, "vm1", "r1", "pool1", "pool1")
    assert expect_json(od.delete(f"{URL}/r1"), True, 200) == {"ok": True}
    assert r.smembers(K.completed("pool1")) == {"vm1"} and not r.scard(K.running("pool1"))
    assert not r.exists(K.ondemand_vms("r1", "pool1", "pool1")) and not r.zcard(K.ondemand_new())
    assert r.hget(K.ondemand_request("r1"), "status") == "deleted"
    assert 1_296_000 - 5 < r.ttl(K.ondemand_request("r1")) <= 1_296_000
    assert expect_json(od.delete(f"{URL}/r1"), True, 200) == {"ok": True,
                                                             "message": "the request has already been deleted"}


def test_with_auth_only_the_requests_token_deletes_it(od_auth: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    make_token(r, "othertoken", "eve")
    original_request(r, "r1", "pool1:pool1:1", token=TOKEN)
    expect_unauthorized(od_auth.delete(f"{URL}/r1"))
    expect_unauthorized(od_auth.delete(f"{URL}/r1", headers={"X-AUTH-TOKEN": "othertoken"}))
    assert not r.hexists(K.ondemand_request("r1"), "status")
    expect_json(od_auth.delete(f"{URL}/r1", headers={"X-AUTH-TOKEN": TOKEN}), True, 200)
    assert r.hget(K.ondemand_request("r1"), "status") == "deleted"


def test_other_methods_and_the_v1_prefix(od: TestClient) -> None:
    assert expect_json(od.put(f"{URL}/r1"), False, 405)["code"] == "method_not_allowed"
    assert expect_json(od.get("/api/v1/ondemandvm/r1"), False, 404)["code"] == "no_such_route"
