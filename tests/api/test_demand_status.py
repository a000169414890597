"""Issue 15: a pool sized to demand has its target in /status (API v1 and v3), as documented in each
version's OpenAPI document; a pool of a fixed size has none, and its document is unchanged."""

from __future__ import annotations

import jsonschema
import redis
from starlette.testclient import TestClient

from tests.api.conftest import MakeClient
from vmpooler_core.demand import MAX_SIZE, Target
from vmpooler_core.keys import Keys

K = Keys()
POOLS = """
providers: {dummy: {}}
pools:
  - {name: pool1, size: 2, max_size: 9}
  - {name: pool2, size: 10}
"""


def documented(client: TestClient, path: str, schema: str, body: object) -> None:
    doc = client.get(path).json()
    jsonschema.validate(body, {**doc["components"]["schemas"][schema], "components": doc["components"]})


def test_status_shows_the_target_and_why(make_client: MakeClient, sync_redis: redis.Redis) -> None:
    with make_client(pools=POOLS) as client:
        assert "target" not in client.get("/api/v1/status").json()["pools"]["pool1"]  # not sized yet
        target = Target(9, MAX_SIZE, 2, 9, 12.5, 11, 180.0, 1_750_000_000.0)
        sync_redis.hset(K.sizing(), "pool1", target.to_json())  # as the manager holding pool1 writes it
        v1 = client.get("/api/v1/status").json()
        assert v1["pools"]["pool1"]["max"] == 2 and "target" not in v1["pools"]["pool2"]
        assert v1["pools"]["pool1"]["target"] == {
            "size": 9, "limit": "max_size", "floor": 2, "max_size": 9, "demand_per_minute": 12.5, "peak": 11,
            "usual": 0, "refill_seconds": 180.0, "at": "2025-06-15 15:06:40 +0000",
            "why": "at max_size 9: demand 12.5 VMs/min, up to 11 within one refill of 180 s"}
        documented(client, "/api/v1/openapi.json", "Status", v1)
        v3 = client.get("/api/v3/status").json()
        assert v3["pools"]["pool1"]["target"] == v1["pools"]["pool1"]["target"]
        documented(client, "/api/v3/openapi.json", "StatusV3", v3)
