"""Issue 12, report 5: a checkout answered 503 "did not answer in time" was found afterwards in `running`,
held by nobody. A script sent before the request's deadline can still run after it; so the scripts of a
request's changes carry its deadline into Redis and do nothing when Redis reaches them after it
(vmpooler_core/server_clock.py, lua/deadline.lua).

Here a relay between the API and Redis (tests/redis_relay.py) holds the request's script back until the
API has answered 503, then lets Redis run it: nothing in Redis may have changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.api.conftest import TOKEN, TestClient, config_text
from tests.api.helpers import K, everything, expect_json, make_token, ready, running
from tests.conftest import make_config
from tests.redis_relay import Relay
from tests.redis_server import RedisServer
from vmpooler_core import scripts
from vmpooler_core.auth import UsersAuthenticator
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.server_clock import Late
from vmpoolerd.api import create_app
from vmpoolerd.api.errors import OutageLog, from_exception

DEADLINE = 0.5  # seconds: the request is answered 503 then, while its script is held


@pytest.fixture
def relay(redis_server: RedisServer, redis_url: str) -> Iterator[Relay]:
    relay = Relay(redis_server.port).start()
    yield relay
    relay.stop()


def _client(relay: Relay, authenticator: UsersAuthenticator | None = None) -> TestClient:
    config = make_config(config_text(relay.url, auth=authenticator is not None))
    return TestClient(create_app(config, metrics=NullMetrics(), authenticator=authenticator, deadline=DEADLINE))


def _late(client: TestClient, relay: Relay, r: redis.Redis, script: str, method: str, path: str,
          **request: Any) -> bytes:
    """Send the request with its `script` held back; once it is answered 503, let Redis run the script.
    Returns Redis's answer to it."""
    r.script_load(scripts.source(script))  # cached, so Redis runs it as sent (no NOSCRIPT, no EVAL)
    relay.hold(scripts.digest(script).encode())
    body = expect_json(client.request(method, path, **request), False, 503)
    assert body["code"] == "backend_unavailable"
    return relay.release()


def test_a_checkout_redis_runs_after_its_deadline_takes_nothing(relay: Relay, r: redis.Redis,
                                                                  authenticator: UsersAuthenticator) -> None:
    ready(r, "pool1", "vm1")
    make_token(r, TOKEN)
    before = everything(r)
    with _client(relay, authenticator) as client:
        answer = _late(client, relay, r, "checkout", "POST", "/api/v1/vm/pool1", headers={"X-AUTH-TOKEN": TOKEN})
    assert r.smembers(K.ready("pool1")) == {"vm1"} and not r.exists(K.running("pool1")), "the VM is still ready"
    assert not r.exists(K.history("vm1")) and not r.exists(K.held(TOKEN)), "no history, nothing held by the token"
    assert everything(r) == before, "nothing else changed either (the token's last use, the fence's record)"
    assert answer.startswith(b"-LATE "), answer


def test_a_return_redis_runs_after_its_deadline_returns_nothing(relay: Relay, r: redis.Redis,
                                                                 authenticator: UsersAuthenticator) -> None:
    make_token(r, TOKEN)
    running(r, "pool1", "vm1", token=TOKEN)
    r.sadd(K.held(TOKEN), "vm1")
    before = everything(r)
    with _client(relay, authenticator) as client:
        answer = _late(client, relay, r, "return", "DELETE", "/api/v1/vm/vm1", headers={"X-AUTH-TOKEN": TOKEN})
    assert r.smembers(K.running("pool1")) == {"vm1"} and not r.exists(K.completed("pool1")), "still checked out"
    assert not r.exists(K.history("vm1")) and r.smembers(K.held(TOKEN)) == {"vm1"}
    assert everything(r) == before
    assert answer.startswith(b"-LATE "), answer


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/api/v1/vm/vm1", {"lifetime": 3, "tags": {"team": "qa"}}),
    ("POST", "/api/v1/vm/vm1/disk/8", None),
    ("POST", "/api/v1/vm/vm1/snapshot", None)], ids=["lifetime-and-tags", "disk", "snapshot"])
def test_a_change_redis_runs_after_its_deadline_changes_nothing(relay: Relay, r: redis.Redis, method: str,
                                                                 path: str, body: Any) -> None:
    running(r, "pool1", "vm1")
    before = everything(r)
    with _client(relay) as client:
        answer = _late(client, relay, r, "write", method, path, json=body)
    assert everything(r) == before, "no lifetime, tag or task written"
    assert answer.startswith(b"-LATE "), answer


def test_a_late_refusal_is_the_deadlines_503() -> None:
    """The answer when the script's refusal comes back before the request's own timer fires."""
    response = from_exception(Late("LATE 1700000000250000 1700000000000000"), OutageLog())
    assert response is not None and response.status_code == 503
    body = json.loads(response.body)
    assert body["ok"] is False and body["code"] == "backend_unavailable", body
    assert "250 ms after its deadline" in body["reason"], body
