"""Issue 14: the original's `dummy` auth provider (its v3 specs log in with it, contract B8.4), only with
its own opt-in, VMPOOLER_DEBUG=true: any user whose password differs from the name gets a token."""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import TestClient
from tests.api.helpers import basic, expect_json, expect_unauthorized
from tests.conftest import make_config
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app


def test_dummy_auth_with_the_originals_opt_in(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    config = make_config(f"redis: {{url: '{redis_url}'}}\nauth:\n  provider: dummy\nproviders: {{dummy: {{}}}}\n"
                         "pools:\n  - {name: pool1, size: 1}\n", VMPOOLER_DEBUG="true")
    assert any("provider: dummy" in rec.getMessage() and "tests only" in rec.getMessage() for rec in caplog.records)
    with TestClient(create_app(config, metrics=NullMetrics())) as client:
        token = expect_json(client.post("/api/v3/token", headers=basic("admin", "s3cr3t")), True, 200)["token"]
        assert expect_json(client.get(f"/api/v3/token/{token}"), True, 200)[token]["user"] == "admin"
        expect_unauthorized(client.post("/api/v3/token", headers=basic("admin", "admin")))
