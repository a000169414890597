"""schemathesis against the live daemon's API v3, from its own OpenAPI document (`/api/v3/openapi.json`):
for every operation, bounded generated requests, valid and invalid, each response checked against the
document (status code, content type, body schema; never a 5xx). As test_schemathesis.py does for v1, with
the pool configuration API switched on and pools that have domains of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api.conftest import PASSWORDS, TOKEN
from tests.api.helpers import basic
from tests.api.test_schemathesis import serving_examples
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def live_v3(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving_examples(redis_server.url, Path(tmp_path_factory.mktemp("schemathesis_v3")) / "vmpooler.yaml",
                          "config:\n  vm_lifetime_auth: 2\n  experimental_features: true\n"
                          "dns_configs:\n  one: {dns_class: dynamic-dns, domain: one.example.com}\n"
                          "providers: {dummy: {}}\n"
                          "pools:\n  - {name: pool1, alias: [poolone], size: 5, provider: dummy, dns_plugin: one}\n"
                          "  - {name: pool2, size: 10, provider: dummy}\n", ready_vms=200) as url:
        yield url


@pytest.fixture(scope="module")
def api_v3_schema(live_v3: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_v3}/api/v3/openapi.json")


# The token and summary routes are v1's own handlers, which test_schemathesis.py covers: here, the routes
# where v3 answers differently and v3's own.
schema = schemathesis.pytest.from_fixture("api_v3_schema").exclude(path_regex=r"^/api/v3/(token|summary)")


# Every operation's examples against a live daemon, in one test: some 15 s on a quiet machine, and close
# to the suite's default timeout of 120 s (measured: 115 s) on a heavily loaded one.
@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_v3_conforms_to_its_document(case: schemathesis.Case) -> None:
    # As for v1: valid credentials and token on every request (schemathesis also tries without them),
    # and every check but "positive data acceptance" (JSON Schema cannot say that counts must add up to
    # at least 1 and at most the per-request cap, or that a pool name must be configured).
    headers = {**basic("admin", PASSWORDS["admin"]), "X-AUTH-TOKEN": TOKEN}
    case.call_and_validate(headers=headers, timeout=10,
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
