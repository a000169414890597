"""`/token`: the original's A8.4 specs, with its holes closed (A7.12): revoking a token needs its owner's
credentials, and an unknown token is 404, not 401. Reading one needs only the token, as in the original
(A2.2, B2.2): its clients send no credentials for it."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.api.conftest import PASSWORDS, TOKEN, TestClient, config_text
from tests.api.helpers import K, basic, expect_json, expect_unauthorized, make_token, running
from tests.conftest import make_config
from vmpooler_core.auth import Verdict
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app

ADMIN = basic("admin", PASSWORDS["admin"])
JDOE = basic("jdoe", PASSWORDS["jdoe"])


@pytest.mark.parametrize(("method", "path"), [("GET", "/token"), ("POST", "/token"), ("GET", f"/token/{TOKEN}"),
                                              ("DELETE", f"/token/{TOKEN}")])
@pytest.mark.parametrize("prefix", ["/api/v1", ""])
def test_without_auth_configured_every_token_route_is_404(client: TestClient, r: redis.Redis, method: str,
                                                          path: str, prefix: str) -> None:
    make_token(r, TOKEN)
    expect_json(client.request(method, prefix + path, headers=ADMIN), False, 404)
    assert r.exists(K.token(TOKEN))


@pytest.mark.parametrize("headers", [{}, basic("admin", "wrong"), basic("nobody", "s3cr3t"),
                                     {"Authorization": "Basic !!notbase64"}, {"Authorization": "Bearer x"},
                                     {"Authorization": "Basic " + "YWRtaW4="}])  # "admin", no colon
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/token"), ("POST", "/api/v1/token"),
                                              ("DELETE", f"/api/v1/token/{TOKEN}")])
def test_bad_or_missing_credentials_are_401(auth_client: TestClient, r: redis.Redis, method: str, path: str,
                                            headers: dict[str, str]) -> None:
    make_token(r, TOKEN, "admin")
    expect_unauthorized(auth_client.request(method, path, headers=headers))
    assert r.exists(K.token(TOKEN)) and len(r.keys(K.token("*"))) == 1


def test_create_list_show_and_revoke(auth_client: TestClient, r: redis.Redis) -> None:
    token = expect_json(auth_client.post("/api/v1/token", headers=ADMIN), True, 200)["token"]
    assert len(token) == 32 and r.hget(K.token(token), "user") == "admin"
    created = r.hget(K.token(token), "created")

    listed = expect_json(auth_client.get("/api/v1/token", headers=ADMIN), True, 200)
    assert listed == {"ok": True, token: {"created": created, "last": "never"}}

    running(r, "pool1", "vm1", token=token, user="admin")
    running(r, "pool2", "vm2")
    shown = expect_json(auth_client.get(f"/api/v1/token/{token}", headers=ADMIN), True, 200)
    assert shown[token]["user"] == "admin" and shown[token]["created"] == created
    assert shown[token]["vms"] == {"running": ["vm1"]}

    assert expect_json(auth_client.delete(f"/api/v1/token/{token}", headers=ADMIN), True, 200) == {"ok": True}
    assert not r.exists(K.token(token))
    expect_json(auth_client.delete(f"/api/v1/token/{token}", headers=ADMIN), False, 404)
    expect_json(auth_client.get("/api/v1/token", headers=ADMIN), False, 404)


def test_list_shows_last_use(auth_client: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    running(r, "pool1", "vm1", token=TOKEN)
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"lifetime": 3}, headers={"X-AUTH-TOKEN": TOKEN}), True, 200)
    listed = expect_json(auth_client.get("/token", headers=JDOE), True, 200)
    assert listed[TOKEN]["created"] == "2016-07-25 10:43:32 -0500" and listed[TOKEN]["last"] != "never"


def test_another_users_token_cannot_be_revoked(auth_client: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    expect_unauthorized(auth_client.delete(f"/api/v1/token/{TOKEN}", headers=ADMIN))
    assert r.exists(K.token(TOKEN))
    expect_json(auth_client.get("/api/v1/token", headers=ADMIN), False, 404)  # admin has none
    expect_json(auth_client.delete(f"/api/v1/token/{TOKEN}", headers=JDOE), True, 200)


@pytest.mark.parametrize("headers", [{}, {"X-AUTH-TOKEN": TOKEN}, basic("admin", "wrong"), ADMIN])
@pytest.mark.parametrize("prefix", ["/api/v1", ""])
def test_a_token_is_read_by_whoever_holds_it(auth_client: TestClient, r: redis.Redis, headers: dict[str, str],
                                             prefix: str) -> None:
    """No credentials, or any (the Go library sends only X-AUTH-TOKEN): the token in the path is the secret.
    The answer is A2.8's: every field of the token, and its running VMs; reading it is not a use."""
    make_token(r, TOKEN, "jdoe")
    running(r, "pool1", "vm1", token=TOKEN, user="jdoe")
    running(r, "pool1", "vm2")
    shown = expect_json(auth_client.get(f"{prefix}/token/{TOKEN}", headers=headers), True, 200)
    assert shown == {"ok": True, TOKEN: {"user": "jdoe", "created": "2016-07-25 10:43:32 -0500",
                                         "vms": {"running": ["vm1"]}}}
    assert not r.hexists(K.token(TOKEN), "last")


@pytest.mark.parametrize("token", ["nosuchtoken", "UPPER", "a" * 65, "x;y", "%20"])
def test_unknown_or_odd_tokens_are_404(auth_client: TestClient, token: str) -> None:
    expect_json(auth_client.get(f"/api/v1/token/{token}", headers=ADMIN), False, 404)
    expect_json(auth_client.delete(f"/api/v1/token/{token}", headers=ADMIN), False, 404)


def test_a_new_token_checks_out_and_returns(auth_client: TestClient, r: redis.Redis) -> None:
    token = expect_json(auth_client.post("/token", headers=JDOE), True, 200)["token"]
    r.sadd(K.ready("pool1"), "vm1")
    r.hset(K.vm("vm1"), mapping={"pool": "pool1", "template": "pool1"})
    expect_json(auth_client.post("/vm/pool1", headers={"X-AUTH-TOKEN": token}), True, 200)
    assert r.hget(K.vm("vm1"), "token:user") == "jdoe"
    expect_json(auth_client.delete("/vm/vm1", headers={"X-AUTH-TOKEN": token}), True, 200)


class BlockingAuthenticator:
    """Holds every check until released, like an LDAP server that is slow to answer."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def check(self, user: str, password: str, seconds: float) -> Verdict:
        self.entered.set()
        return Verdict(user if self.release.wait(10) and (user, password) == ("admin", PASSWORDS["admin"]) else None)


def test_a_slow_auth_backend_does_not_block_other_requests(redis_url: str) -> None:
    checker = BlockingAuthenticator()
    api = create_app(make_config(config_text(redis_url, auth=True)), metrics=NullMetrics(), authenticator=checker,
                     deadline=10)
    with TestClient(api) as client:
        outcome: list[int] = []
        waiting = threading.Thread(target=lambda: outcome.append(client.post("/token", headers=ADMIN).status_code))
        waiting.start()
        assert checker.entered.wait(10)
        assert client.get("/api/v1/vm").status_code == 200  # served while the check is still running
        checker.release.set()
        waiting.join(10)
    assert outcome == [200]
