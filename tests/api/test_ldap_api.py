"""`POST /token` with `auth: provider: ldap`, configured as an administrator would, against a real slapd
(tests.ldap_server): the authenticator is the one the app builds from the config.

A directory that is stopped or frozen (SIGSTOP) is answered 503 `directory_unavailable` within its
`timeout`, never 401 or 500, and shows in /healthcheck and /status; names are one user however typed;
every connection to the directory is closed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from tests.api.conftest import TestClient, config_text
from tests.api.helpers import K, basic, expect_json, expect_unauthorized
from tests.conftest import make_config
from tests.ldap_server import PEOPLE, STAFF, USERS, LdapServer
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app

PASSWORD = {user.name: user.password for user in USERS}
TIMEOUT = 1  # auth.ldap.timeout in these tests, seconds


@contextmanager
def ldap_client(redis_url: str, port: int, extra: str = "") -> Iterator[TestClient]:
    auth = (f"auth:\n  provider: ldap\n  ldap:\n    host: 127.0.0.1\n    port: {port}\n"
            f"    base: ['{PEOPLE}', '{STAFF}']\n    user_object: [uid, cn]\n    encryption: none\n"
            f"    timeout: {TIMEOUT}\n{extra}")
    config = make_config(config_text(redis_url) + auth)
    with TestClient(create_app(config, metrics=NullMetrics()), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def own_server() -> Iterator[LdapServer]:
    """A slapd of the test's own, to stop or freeze."""
    server = LdapServer().start()
    yield server
    server.remove()


@pytest.mark.parametrize("user", sorted(PASSWORD))
def test_a_directory_user_gets_a_token(ldap_server: LdapServer, redis_url: str, r: redis.Redis, user: str) -> None:
    with ldap_client(redis_url, ldap_server.port) as client:
        token = expect_json(client.post("/api/v1/token", headers=basic(user, PASSWORD[user])), True, 200)["token"]
    assert r.hget(K.token(token), "user") == user


def test_a_wrong_password_is_401(ldap_server: LdapServer, redis_url: str, r: redis.Redis) -> None:
    with ldap_client(redis_url, ldap_server.port) as client:
        expect_unauthorized(client.post("/api/v1/token", headers=basic("jdoe", "wrong")))
        expect_unauthorized(client.post("/api/v1/token", headers=basic("jdoe,ou=people", PASSWORD["jdoe"])))
    assert not r.keys(K.token("*"))


def test_one_user_however_the_name_is_typed(ldap_server: LdapServer, redis_url: str, r: redis.Redis) -> None:
    with ldap_client(redis_url, ldap_server.port) as client:
        for typed in ("JDOE", " jdoe", "jdoe", "jDoe "):
            expect_json(client.post("/api/v1/token", headers=basic(typed, PASSWORD["jdoe"])), True, 200)
        listed = expect_json(client.get("/api/v1/token", headers=basic("JDOE", PASSWORD["jdoe"])), True, 200)
    assert len(listed) == 1 + 4  # "ok" and the four tokens: one user's
    assert {r.hget(key, "user") for key in r.keys(K.token("*"))} == {"jdoe"}


def unavailable(client: TestClient) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    response = client.post("/api/v1/token", headers=basic("jdoe", PASSWORD["jdoe"]))
    body = expect_json(response, False, 503)
    assert body["code"] == "directory_unavailable" and "www-authenticate" not in response.headers
    return body, time.monotonic() - started


def health(client: TestClient, r: redis.Redis) -> tuple[int, dict[str, object]]:
    r.zadd(K.heartbeats(), {"m1": time.time()})  # a live manager: only the directory can be unhealthy
    response = client.get("/healthcheck")
    return response.status_code, response.json()


def test_a_stopped_directory_is_503_with_the_reason_and_shows_in_health(
        own_server: LdapServer, redis_url: str, r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    where = f"ldap://127.0.0.1:{own_server.port}"
    with ldap_client(redis_url, own_server.port) as client:
        expect_json(client.post("/api/v1/token", headers=basic("jdoe", PASSWORD["jdoe"])), True, 200)
        assert health(client, r)[1]["directory"] == {"ok": True, "state": "ok", "hosts": {where: {
            "ok": True, "seen": health(client, r)[1]["directory"]["hosts"][where]["seen"]}}}  # type: ignore[index]
        own_server.stop()
        with caplog.at_level(logging.INFO):
            for _ in range(8):  # more than `failed_logins: allowed`: an outage counts no failures
                body, seconds = unavailable(client)
        assert where in str(body["reason"]) and "refused" in str(body["reason"]) and seconds < 1
        status, verdict = health(client, r)
        status_doc = client.get("/status").json()
    assert status == 503 and verdict["ok"] is False and where in str(verdict["reason"])
    directory = verdict["directory"]
    assert directory["state"] == "unavailable" and "refused" in directory["hosts"][where]["reason"]  # type: ignore[index]
    assert status_doc["directory"] == directory
    assert len(r.keys(K.token("*"))) == 1
    # The outage is logged once (not per login), each failed login once on the audit log, no traceback.
    outage = [rec.getMessage() for rec in caplog.records if "cannot be asked" in rec.getMessage()]
    assert len(outage) == 1 and where in outage[0] and "Connection refused" in outage[0], outage
    logins = [rec.getMessage() for rec in caplog.records if rec.name == "vmpooler.audit"]
    assert len(logins) == 8 and all("code=directory_unavailable" in line and "user=jdoe" in line for line in logins)
    assert all(record.exc_info is None and record.levelno < logging.ERROR for record in caplog.records)
    assert PASSWORD["jdoe"] not in caplog.text and "Traceback" not in caplog.text


def test_a_frozen_directory_is_503_within_its_timeout_and_is_seen_again_when_it_answers(
        own_server: LdapServer, redis_url: str, r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    with ldap_client(redis_url, own_server.port) as client, caplog.at_level(logging.WARNING, "vmpooler.auth"):
        own_server.freeze()
        body, seconds = unavailable(client)
        assert "no answer within 1s" in str(body["reason"]) and TIMEOUT <= seconds < TIMEOUT + 1, seconds
        assert health(client, r)[0] == 503
        own_server.thaw()
        expect_json(client.post("/api/v1/token", headers=basic("jdoe", PASSWORD["jdoe"])), True, 200)
        status, verdict = health(client, r)
    assert status == 200 and verdict["directory"]["state"] == "ok"  # type: ignore[index]
    said = [rec.getMessage() for rec in caplog.records if rec.name == "vmpooler.auth"][-2:]
    assert "cannot be asked" in said[0] and said[1] == f"directory ldap://127.0.0.1:{own_server.port} answers again"


def test_every_connection_to_the_directory_is_closed(own_server: LdapServer, redis_url: str) -> None:
    # Wrong passwords, unknown users, a name that fits no entry and a right one, each bind tried on
    # several bases and user objects: before the fix, each failed login left its connection open.
    with ldap_client(redis_url, own_server.port, "  failed_logins: {allowed: 1000}\n") as client:
        for number in range(30):
            user, password = [("jdoe", "wrong"), (f"nobody{number}", "x"), ("jdoe", PASSWORD["jdoe"])][number % 3]
            assert client.post("/api/v1/token", headers=basic(user, password)).status_code in (200, 401)
        deadline = time.monotonic() + 5
        while own_server.connections() and time.monotonic() < deadline:
            time.sleep(0.01)  # slapd closes its side as it reads each unbind
        assert own_server.connections() == 0
