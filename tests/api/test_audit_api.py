"""The audit trail through the API: one line per checkout, return and change with the token's user,
the client's address and the request's id (the client's X-Request-Id when sane, sent back either way),
never a token or a password; the optional access log; the VM's history in GET /vm/<host>."""

from __future__ import annotations

import logging
import re

import jsonschema
import pytest
import redis

from tests.api.conftest import PASSWORDS, TOKEN, MakeClient, TestClient
from tests.api.helpers import basic, expect_json, make_token, ready, running
from vmpoolerd.api.openapi import document

JDOE = basic("jdoe", PASSWORDS["jdoe"])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="vmpooler.access")
    caplog.set_level(logging.DEBUG, logger="vmpooler.audit")  # last: it sets the capture's level too
    return caplog


def lines(caplog: pytest.LogCaptureFixture, logger: str = "vmpooler.audit", level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and (level is None or r.levelno == level)]


def test_checkout_change_and_return_are_logged_with_user_client_and_request_id(
        auth_client: TestClient, r: redis.Redis, logs: pytest.LogCaptureFixture) -> None:
    make_token(r, TOKEN, "jdoe")
    ready(r, "pool1", "vm1")
    headers = {"X-AUTH-TOKEN": TOKEN, "X-Request-Id": "build-42.7"}
    response = auth_client.post("/api/v1/vm/pool1", headers=headers)
    expect_json(response, True, 200)
    assert response.headers["x-request-id"] == "build-42.7"
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"lifetime": 3}, headers=headers), True, 200)
    expect_json(auth_client.delete("/api/v1/vm/vm1", headers={"X-AUTH-TOKEN": TOKEN}), True, 200)
    found = lines(logs)
    who = "user=jdoe client=testclient"
    assert found[:2] == [f"checkout pool=pool1 vm=vm1 {who} request=build-42.7",
                         f"lifetime pool=pool1 vm=vm1 {who} request=build-42.7 hours=3"]
    assert re.fullmatch(rf"return pool=pool1 vm=vm1 {who} request=[0-9a-f]{{16}}", found[2]), found[2]
    assert TOKEN not in logs.text


def test_without_auth_the_user_is_a_dash(client: TestClient, r: redis.Redis, logs: pytest.LogCaptureFixture) -> None:
    ready(r, "pool1", "vm1")
    response = client.post("/vm", json={"pool1": 1})
    expect_json(response, True, 200)
    assert lines(logs) == [f"checkout pool=pool1 vm=vm1 user=- client=testclient "
                           f"request={response.headers['x-request-id']}"]


@pytest.mark.parametrize("sent", ["has space", "x" * 129, "<script>", "a;b", "-leading-dash", ""])
def test_an_odd_request_id_is_replaced(client: TestClient, r: redis.Redis, logs: pytest.LogCaptureFixture,
                                       sent: str) -> None:
    ready(r, "pool1", "vm1")
    response = client.post("/vm/pool1", headers={"X-Request-Id": sent})
    made = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made) and made != sent
    assert lines(logs)[0].endswith(f"request={made}")


def test_every_answer_carries_its_request_id(client: TestClient) -> None:
    for response in (client.get("/api/v1/status"), client.get("/no/such/route"), client.delete("/vm/nosuchvm")):
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])
    first, second = client.get("/api/v1/vm"), client.get("/api/v1/vm")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_refused_checkouts(auth_client: TestClient, r: redis.Redis, logs: pytest.LogCaptureFixture) -> None:
    ready(r, "pool1", "vm1")
    expect_json(auth_client.post("/vm/pool1", headers={"X-AUTH-TOKEN": "madeuptoken"}), False, 401)
    expect_json(auth_client.post("/vm/nosuchpool"), False, 404)
    expect_json(auth_client.post("/vm/pool2"), False, 503)
    info, debug = lines(logs, level=logging.INFO), lines(logs, level=logging.DEBUG)
    assert len(info) == 1 and info[0].startswith("checkout refused pool=pool1 vm=- user=- client=testclient")
    assert "code=unauthorized" in info[0]
    assert len(debug) == 2 and "code=unknown_pool" in debug[0] and "code=no_capacity" in debug[1], debug
    assert "madeuptoken" not in logs.text


def test_token_routes_log_the_user_never_the_token_or_password(auth_client: TestClient,
                                                                logs: pytest.LogCaptureFixture) -> None:
    token = expect_json(auth_client.post("/api/v1/token", headers=JDOE), True, 200)["token"]
    expect_json(auth_client.delete(f"/api/v1/token/{token}", headers=JDOE), True, 200)
    found = lines(logs)
    assert found[0].startswith("token-create pool=- vm=- user=jdoe client=testclient request=")
    assert found[1].startswith("token-revoke pool=- vm=- user=jdoe client=testclient request=")
    assert token not in logs.text and PASSWORDS["jdoe"] not in logs.text


def test_the_access_log_is_off_by_default(client: TestClient, logs: pytest.LogCaptureFixture) -> None:
    client.get("/api/v1/status")
    assert lines(logs, "vmpooler.access") == []


def test_the_access_log_has_a_line_per_request(make_client: MakeClient, r: redis.Redis,
                                               logs: pytest.LogCaptureFixture) -> None:
    make_token(r, TOKEN, "jdoe")
    with make_client(auth=True, app="  access_log: true") as client:
        status = client.get("/api/v1/status/", headers={"X-Request-Id": "abc-1"})
        missing = client.get("/api/v1/vm/nosuchvm")
        revoked = client.delete(f"/api/v1/token/{TOKEN}", headers=JDOE)
    assert (status.status_code, missing.status_code, revoked.status_code) == (200, 404, 200)
    found = lines(logs, "vmpooler.access")
    assert len(found) == 3, found
    assert re.fullmatch(r"GET /api/v1/status/ 200 \d+\.\dms client=testclient request=abc-1", found[0]), found[0]
    assert re.fullmatch(r"GET /api/v1/vm/nosuchvm 404 \d+\.\dms client=testclient request=[0-9a-f]{16}", found[1])
    assert found[2].startswith("DELETE /api/v1/token/*** 200 ")
    assert TOKEN not in logs.text


def test_the_address_header_names_the_client_behind_a_proxy(make_client: MakeClient, r: redis.Redis,
                                                            logs: pytest.LogCaptureFixture) -> None:
    ready(r, "pool1", "vm1")
    app = "rate_limits:\n  enabled: false\n  address_header: X-Forwarded-For\n"
    with make_client(pools=f"{app}providers: {{dummy: {{}}}}\npools:\n  - {{name: pool1, size: 1}}\n") as client:
        client.post("/vm/pool1", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert "client=198.51.100.7 " in lines(logs)[0]


def test_the_vm_document_shows_the_history(auth_client: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    ready(r, "pool1", "vm1")
    auth_client.post("/vm/pool1", headers={"X-AUTH-TOKEN": TOKEN, "X-Request-Id": "r1"})
    auth_client.delete("/vm/vm1", headers={"X-AUTH-TOKEN": TOKEN, "X-Request-Id": "r2"})
    details = expect_json(auth_client.get("/api/v1/vm/vm1"), True, 200)["vm1"]
    assert [{k: v for k, v in entry.items() if k != "at"} for entry in details["history"]] == [
        {"event": "checkout", "user": "jdoe", "request": "r1"},
        {"event": "return", "user": "jdoe", "request": "r2"}]  # no client address to anyone who asks
    jsonschema.validate(details, document()["components"]["schemas"]["Vm"])


def test_a_vm_without_history_has_no_history_field(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")  # put there by hand (or by the original): no history
    assert "history" not in expect_json(client.get("/vm/vm1"), True, 200)["vm1"]
