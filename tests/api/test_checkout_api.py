"""Checkout through HTTP: the original's `POST /vm` (contract A8.1) and `POST /vm/<a+b>` (A8.2)
specs, each run in both request forms, plus the bad input the original answered with a 500."""

from __future__ import annotations

import pytest
import redis

from tests.api.conftest import NO_ALIAS_POOLS, TOKEN, MakeClient, TestClient
from tests.api.helpers import K, expect_json, expect_unauthorized, make_token, members, ready, vm
from tests.conftest import StatsdNames

FORMS = ("body", "path")


def checkout(client: TestClient, form: str, counts: dict[str, int], headers: dict[str, str] | None = None,
             prefix: str = "/api/v1"):  # type: ignore[no-untyped-def]
    """POST /vm with `{"pool": "n"}` (string counts, as the original's clients send), or
    POST /vm/pool+pool+... for the same request."""
    if form == "body":
        return client.post(f"{prefix}/vm", json={k: str(v) for k, v in counts.items()}, headers=headers)
    names = "+".join(name for name, n in counts.items() for _ in range(n))
    return client.post(f"{prefix}/vm/{names}", headers=headers)


@pytest.mark.parametrize("form", FORMS)
def test_one_vm(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "abcdefghijklmnop")
    response = checkout(client, form, {"pool1": 1})
    assert expect_json(response, True, 200) == {"ok": True, "pool1": {"hostname": "abcdefghijklmnop"}}
    assert members(r, "running", "pool1") == {"abcdefghijklmnop"}


@pytest.mark.parametrize("form", FORMS)
def test_alias_is_keyed_by_the_real_pool(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "abcdefghijklmnop")
    response = checkout(client, form, {"poolone": 1})
    assert expect_json(response, True, 200) == {"ok": True, "pool1": {"hostname": "abcdefghijklmnop"}}


@pytest.mark.parametrize("form", FORMS)
def test_unknown_pool_is_404_and_takes_nothing(make_client: MakeClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    metrics = StatsdNames()
    with make_client(metrics=metrics) as client:
        expect_json(checkout(client, form, {"poolpoolpool": 1}), False, 404)
        expect_json(checkout(client, form, {"pool1": 1, "poolpoolpool": 1}), False, 404)
    assert members(r, "ready", "pool1") == {"vm1"}
    assert metrics.counts == ["checkout.invalid.poolpoolpool"] * 2


@pytest.mark.parametrize("form", FORMS)
def test_empty_pool_without_aliases_configured(make_client: MakeClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    with make_client(pools=NO_ALIAS_POOLS) as client:
        expect_json(checkout(client, form, {"pool1": 1}), True, 200)
        expect_json(checkout(client, form, {"pool1": 1}), False, 503)


@pytest.mark.parametrize("form", FORMS)
def test_alias_to_an_empty_pool(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    expect_json(checkout(client, form, {"poolone": 1}), True, 200)
    expect_json(checkout(client, form, {"poolone": 1}), False, 503)


@pytest.mark.parametrize("form", FORMS)
def test_two_pools_in_request_order(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "a1")
    ready(r, "pool2", "b1")
    body = expect_json(checkout(client, form, {"pool1": 1, "pool2": 1}), True, 200)
    assert list(body) == ["ok", "pool1", "pool2"]
    assert body == {"ok": True, "pool1": {"hostname": "a1"}, "pool2": {"hostname": "b1"}}


@pytest.mark.parametrize("form", FORMS)
def test_several_vms_of_a_pool_are_a_list(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "a1", "a2")
    ready(r, "pool2", "b1")
    body = expect_json(checkout(client, form, {"pool1": 2, "pool2": 1}), True, 200)
    assert sorted(body["pool1"]["hostname"]) == ["a1", "a2"]
    assert body["pool2"]["hostname"] == "b1"


@pytest.mark.parametrize("form", FORMS)
def test_two_and_three(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "a1", "a2")
    ready(r, "pool2", "b1", "b2", "b3")
    body = expect_json(checkout(client, form, {"pool1": 2, "pool2": 3}), True, 200)
    assert sorted(body["pool1"]["hostname"]) == ["a1", "a2"]
    assert sorted(body["pool2"]["hostname"]) == ["b1", "b2", "b3"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("counts", "pool1", "pool2"), [
    ({"pool1": 1, "pool2": 1}, ["a1"], []),            # A8.1 #9-10, A8.2 #8-9
    ({"pool1": 2, "pool2": 1}, ["a1"], []),            # A8.1 #11-12
    ({"pool1": 2, "pool2": 3}, ["a1"], []),            # A8.1 #13
    ({"pool1": 2, "pool2": 3}, ["a1", "a2"], []),      # A8.1 #14, A8.2 #10-11
    ({"pool1": 2, "pool2": 3}, ["a1"], ["b1"]),        # A8.2 #12-13
])
def test_short_request_is_503_and_puts_everything_back(client: TestClient, r: redis.Redis, form: str,
                                                       counts: dict[str, int], pool1: list[str],
                                                       pool2: list[str]) -> None:
    ready(r, "pool1", *pool1)
    ready(r, "pool2", *pool2)
    expect_json(checkout(client, form, counts), False, 503)
    assert members(r, "ready", "pool1") == set(pool1)
    assert members(r, "ready", "pool2") == set(pool2)
    assert members(r, "running", "pool1") == members(r, "running", "pool2") == set()
    assert all("checkout" not in vm(r, host) for host in pool1 + pool2)


@pytest.mark.parametrize("form", FORMS)
def test_token_without_auth_configured_is_ignored(client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    expect_json(checkout(client, form, {"pool1": 1}, {"X-AUTH-TOKEN": TOKEN}), True, 200)
    assert "lifetime" not in vm(r, "vm1") and "token:token" not in vm(r, "vm1")


@pytest.mark.parametrize("form", FORMS)
def test_valid_token_sets_owner_and_lifetime(auth_client: TestClient, r: redis.Redis, form: str) -> None:
    make_token(r, TOKEN)
    ready(r, "pool1", "vm1")
    expect_json(checkout(auth_client, form, {"pool1": 1}, {"X-AUTH-TOKEN": TOKEN}), True, 200)
    details = vm(r, "vm1")
    assert details["lifetime"] == "2" and details["token:token"] == TOKEN and details["token:user"] == "jdoe"
    assert r.hget(K.token(TOKEN), "last")


@pytest.mark.parametrize("form", FORMS)
def test_no_token_with_auth_configured(auth_client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    expect_json(checkout(auth_client, form, {"pool1": 1}), True, 200)
    assert "lifetime" not in vm(r, "vm1")


@pytest.mark.parametrize("form", FORMS)
def test_bad_token_is_401_before_anything_is_taken(auth_client: TestClient, r: redis.Redis, form: str) -> None:
    ready(r, "pool1", "vm1")
    expect_unauthorized(checkout(auth_client, form, {"pool1": 1}, {"X-AUTH-TOKEN": "nosuchtoken"}))
    assert members(r, "ready", "pool1") == {"vm1"} and "checkout" not in vm(r, "vm1")


def test_domain_is_last_when_configured(make_client: MakeClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    ready(r, "pool2", "b1")
    with make_client(app="  domain: company.com") as client:
        body = expect_json(checkout(client, "body", {"poolone": 1, "pool2": 1}), True, 200)
    assert list(body) == ["ok", "pool1", "pool2", "domain"] and body["domain"] == "company.com"


def test_unversioned_checkout(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1", "a2")
    assert expect_json(checkout(client, "body", {"pool1": 1}, prefix=""), True, 200)["pool1"]["hostname"]
    assert expect_json(checkout(client, "path", {"pool1": 1}, prefix=""), True, 200)["pool1"]["hostname"]


def test_zero_count_entry_contributes_nothing(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    body = expect_json(client.post("/api/v1/vm", json={"pool1": "1", "pool2": 0}), True, 200)
    assert body == {"ok": True, "pool1": {"hostname": "a1"}}


def test_metrics_for_success_and_empty(make_client: MakeClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    metrics = StatsdNames()
    with make_client(metrics=metrics) as client:
        checkout(client, "body", {"poolone": 1})
        checkout(client, "body", {"pool2": 1})
    assert metrics.counts == ["checkout.success.pool1", "checkout.empty.pool2"]


# Bad input: never a 500, never a VM taken -------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"", b"   ", b"{", b"not json", b"[]", b'["pool1"]', b'"pool1"', b"3", b"null", b"true",
    b"{}", b'{"pool1": 0}', b'{"pool1": "-1"}', b'{"pool1": -1}', b'{"pool1": "x"}', b'{"pool1": 1.5}',
    b'{"pool1": true}', b'{"pool1": null}', b'{"pool1": [1]}', b'{"pool1": {"n": 1}}', b'{"pool1": 101}',
    b'{"pool1": 1e400}', b'{"pool1": NaN}', b'{"pool1": "' + b"9" * 5000 + b'"}', b"[" * 100_000,
    b"\xff\xfe\x00garbage",
])
def test_bad_bodies_are_400(make_client: MakeClient, r: redis.Redis, body: bytes) -> None:
    ready(r, "pool1", "a1")
    metrics = StatsdNames()
    with make_client(metrics=metrics) as client:
        expect_json(client.post("/api/v1/vm", content=body), False, 400)
    assert members(r, "ready", "pool1") == {"a1"}
    assert metrics.counts == ["checkout.invalid.unknown"]


@pytest.mark.parametrize("name", ["a b", "pool1;DROP", "../pool1", "p\u00e9", "x" * 101, "x" * 300, ""])
def test_odd_names_in_a_body_are_404(client: TestClient, r: redis.Redis, name: str) -> None:
    ready(r, "pool1", "a1")
    expect_json(client.post("/api/v1/vm", json={name: 1, "pool1": 1}), False, 404)
    assert members(r, "ready", "pool1") == {"a1"}


@pytest.mark.parametrize(("path", "status"), [
    ("pool1+", 400), ("+pool1", 400), ("pool1++pool2", 400), ("pool%201", 404), ("p%C3%A9", 404),
    ("x" * 300, 404), ("pool1+" * 101 + "pool1", 400),
])
def test_odd_path_forms(client: TestClient, r: redis.Redis, path: str, status: int) -> None:
    ready(r, "pool1", "a1")
    expect_json(client.post(f"/api/v1/vm/{path}"), False, status)
    assert members(r, "ready", "pool1") == {"a1"}


def test_body_over_1_mib_is_413(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    big = b'{"pool1": 1, "pad": "' + b"x" * (1 << 20) + b'"}'
    expect_json(client.post("/api/v1/vm", content=big), False, 413)

    def chunks():  # type: ignore[no-untyped-def]
        # No Content-Length: the limit is enforced while the body streams in.
        yield b'{"pool1": 1, "pad": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    expect_json(client.post("/api/v1/vm", content=chunks()), False, 413)
    assert members(r, "ready", "pool1") == {"a1"}


def test_body_just_under_the_limit_is_read(client: TestClient, r: redis.Redis) -> None:
    ready(r, "pool1", "a1")
    body = b'{"pool1": 1}' + b" " * ((1 << 20) - 12)
    assert len(body) == 1 << 20
    expect_json(client.post("/api/v1/vm", content=body), True, 200)
