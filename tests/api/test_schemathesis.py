"""schemathesis against the live daemon, from its own OpenAPI document: for every operation, bounded
generated requests (valid and invalid), and every response checked against the document. Any 5xx,
undocumented status code, wrong content type or body that breaks its schema fails the test.

The daemon runs with auth configured, some ready VMs, a running VM and a token, so that generated
requests reach success paths as well as every kind of refusal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api.conftest import HASHES, PASSWORDS, TOKEN
from tests.api.helpers import K, basic, make_token, ready, running
from tests.api.test_daemon import serving_api
from tests.redis_server import RedisServer
from vmpoolerd.api.openapi import SNAPSHOT_EXAMPLE


@contextmanager
def serving_examples(redis_url: str, config: Path, settings: str, ready_vms: int = 300) -> Iterator[str]:
    """`vmpoolerd api` on a Redis holding the document's examples, some ready VMs and a manager's heartbeat,
    configured with `settings` (the `config:` keys, the pools...) and auth (users of tests.api.conftest)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    ready(client, "pool1", *(f"p1vm{n}" for n in range(ready_vms)))
    ready(client, "pool2", *(f"p2vm{n}" for n in range(ready_vms)))
    # The document's examples: its host name, token and snapshot exist here.
    running(client, "pool1", "cuna2qeahwlzji7", token=TOKEN, user="admin")
    client.hset(K.vm("cuna2qeahwlzji7"), f"snapshot:{SNAPSHOT_EXAMPLE}", "2016-07-25 11:00:00 +0000")
    make_token(client, TOKEN, "admin")
    # A manager's heartbeat that stays fresh for the run, so /healthcheck answers 200, not 503.
    client.zadd(K.heartbeats(), {"schemathesis-manager": time.time() + 3600})
    client.close()
    users = "".join(f"\n    {user}: '{digest}'" for user, digest in HASHES.items())
    # Failed logins unthrottled here: schemathesis sends wrong credentials many times, and checks each is
    # answered 401 (throttling has its own tests: tests/api/test_failed_logins.py).
    config.write_text(f"redis: {{url: '{redis_url}'}}\nauth:\n  provider: users\n  users:{users}\n"
                      f"  failed_logins: {{allowed: 1000000}}\n{settings}")
    with serving_api(config, "error") as served:
        yield served.url
    # An unexpected exception is logged at ERROR with its request id: there must be none.
    assert "unexpected error" not in served.stderr, served.stderr


@pytest.fixture(scope="module")
def live_url(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving_examples(redis_server.url, Path(tmp_path_factory.mktemp("schemathesis")) / "vmpooler.yaml",
                          "config:\n  domain: company.com\n  vm_lifetime_auth: 2\nproviders: {dummy: {}}\n"
                          "pools:\n  - {name: pool1, alias: [poolone], size: 5}\n  - {name: pool2, size: 10}\n") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_url}/api/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


# Every operation's examples against a live daemon, in one test: some 15 s on a quiet machine, and close
# to the suite's default timeout of 120 s (measured: 115 s) on a heavily loaded one.
@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: schemathesis.Case) -> None:
    # Valid credentials on every request; schemathesis also tries each operation without them.
    # Every check runs but "positive data acceptance": the API refuses (400, documented) some requests
    # that JSON Schema cannot describe as invalid: counts that add up to 0 or past the per-request cap
    # across pools, a `from` date in the future or a day that does not exist, `a++b` path forms.
    case.call_and_validate(headers=basic("admin", PASSWORDS["admin"]), timeout=10,
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
