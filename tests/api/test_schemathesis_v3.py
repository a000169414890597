"""schemathesis against the live daemon's API v3, from its own OpenAPI document (`/api/v3/openapi.json`):
for every operation, bounded generated requests, valid and invalid, each response checked against the
document (status code, content type, body schema; never a 5xx). As test_schemathesis.py does for v1, with
the pool configuration API switched on and pools that have domains of their own."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def live_v3(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    ready(client, "pool1", *(f"p1vm{n}" for n in range(200)))
    ready(client, "pool2", *(f"p2vm{n}" for n in range(200)))
    running(client, "pool1", "cuna2qeahwlzji7", token=TOKEN, user="admin")
    client.hset(K.vm("cuna2qeahwlzji7"), f"snapshot:{SNAPSHOT_EXAMPLE}", "2016-07-25 11:00:00 +0000")
    make_token(client, TOKEN, "admin")
    client.zadd(K.heartbeats(), {"schemathesis-manager": time.time() + 3600})
    client.close()
    users = "".join(f"\n    {user}: '{digest}'" for user, digest in HASHES.items())
    config = Path(tmp_path_factory.mktemp("schemathesis_v3")) / "vmpooler.yaml"
    config.write_text(f"redis: {{url: '{redis_server.url}'}}\nconfig:\n  vm_lifetime_auth: 2\n"
                      f"  experimental_features: true\nauth:\n  provider: users\n  users:{users}\n"
                      "dns_configs:\n  one: {dns_class: dynamic-dns, domain: one.example.com}\n"
                      "providers: {dummy: {}}\n"
                      "pools:\n  - {name: pool1, alias: [poolone], size: 5, provider: dummy, dns_plugin: one}\n"
                      "  - {name: pool2, size: 10, provider: dummy}\n")
    with serving_api(config, "error") as served:
        yield served.url
    assert "unexpected error" not in served.stderr, served.stderr


@pytest.fixture(scope="module")
def api_v3_schema(live_v3: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_v3}/api/v3/openapi.json")


# The token and summary routes are v1's own handlers, which test_schemathesis.py covers: here, the routes
# where v3 answers differently and v3's own.
schema = schemathesis.pytest.from_fixture("api_v3_schema").exclude(path_regex=r"^/api/v3/(token|summary)")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_v3_conforms_to_its_document(case: schemathesis.Case) -> None:
    # As for v1: valid credentials and token on every request (schemathesis also tries without them),
    # and every check but "positive data acceptance" (JSON Schema cannot say that counts must add up to
    # at least 1 and at most the per-request cap, or that a pool name must be configured).
    headers = {**basic("admin", PASSWORDS["admin"]), "X-AUTH-TOKEN": TOKEN}
    case.call_and_validate(headers=headers, timeout=10,
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
