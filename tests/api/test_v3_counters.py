"""Issue 14: what API v3 counts as today's original does: its metrics for on-demand requests and refused
pool configuration changes (contract B6), its separate count of on-demand clones in /status's
`queue.cloning` (B2.8); and `max_vms_per_token` applied to on-demand requests too."""

from __future__ import annotations

import redis
from redis import asyncio as aioredis

from tests.api.conftest import TOKEN, MakeClient, config_text
from tests.api.helpers import K, expect_json, make_token, running
from tests.conftest import StatsdNames, make_config
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.manager import Manager

ON = "  experimental_features: true"


def test_the_originals_metrics_for_on_demand_and_configuration_requests(make_client: MakeClient) -> None:
    sink = StatsdNames()
    with make_client(app=ON, metrics=sink) as api:
        expect_json(api.post("/api/v3/ondemandvm", json={"pool1": "1", "request_id": "r-1"}), True, 201)
        expect_json(api.post("/api/v3/ondemandvm", json={"pool1": "1", "request_id": "r-1"}), False, 409)
        expect_json(api.post("/api/v3/ondemandvm/poolone+pool2"), True, 201)
        expect_json(api.post("/api/v3/ondemandvm", json={"pool2": "1", "pool1": "11"}), False, 403)
        expect_json(api.post("/api/v3/ondemandvm", json={"pool1": "1", "nope": "1", "nada": "1"}), False, 404)
        expect_json(api.post("/api/v3/ondemandvm", json=[]), False, 400)
        expect_json(api.post("/api/v3/ondemandvm", content=b"{"), False, 400)  # not JSON: not counted
        expect_json(api.post("/api/v3/config/poolsize", json={"pool10": "1", "pool1": "x"}), False, 400)
        expect_json(api.post("/api/v3/config/clonetarget", json={"pool9": "c"}), False, 400)
        expect_json(api.delete("/api/v3/config/poolsize/pool10"), False, 404)
        expect_json(api.post("/api/v3/poolreset", json={"poolone": "1"}), False, 400)
    assert sink.counts == [
        "ondemandrequest_generate.success", "ondemandrequest_generate.duplicaterequests",
        "ondemandrequest_generate.success", "ondemandrequest_fail.toomanyrequests.pool1",
        "ondemandrequest_fail.invalid.nope", "ondemandrequest_fail.invalid.nada",
        "ondemandrequest_fail.invalid.unknown",
        "config.invalid.pool10", "config.invalid.pool1", "config.invalid.pool9", "config.invalid.unknown",
        "poolreset.invalid.poolone"]


def test_the_token_cap_counts_on_demand_requests(make_client: MakeClient, r: redis.Redis) -> None:
    make_token(r, TOKEN)
    running(r, "pool1", "r1", token=TOKEN)  # held already (found by the held sets' first making)
    with make_client(auth=True, app="  max_vms_per_token: 2") as api:
        headers = {"X-AUTH-TOKEN": TOKEN}
        refused = expect_json(api.post("/api/v3/ondemandvm", json={"pool1": "2"}, headers=headers), False, 403)
        assert (refused["code"], refused["held"], refused["limit"]) == ("too_many_vms", 1, 2)
        assert not r.exists(K.ondemand_new()) and not r.keys("vmpooler__odrequest__*")  # nothing written
        expect_json(api.post("/api/v3/ondemandvm", json={"pool1": "1"}, headers=headers), True, 201)
        # What that request has still to deliver counts as held.
        refused = expect_json(api.post("/api/v3/ondemandvm/pool2", headers=headers), False, 403)
        assert refused["held"] == 2


async def test_queue_cloning_adds_the_originals_on_demand_clones(make_client: MakeClient, r: redis.Redis,
                                                                  redis_url: str, aredis: aioredis.Redis) -> None:
    # As the original's managers leave the two counters: its pool clones, and its on-demand clones apart.
    r.set(K.clone_tasks(), "2")
    r.set(K.ondemand_clone_tasks(), "3")
    with make_client() as api:
        assert api.get("/api/v3/status?view=queue").json()["queue"]["cloning"] == 5
        # Our manager counts every clone in the first (those of the live managers: none here), and at its start
        # sets the second to 0 (as the original's do at theirs), so that the original's API, reading ours,
        # adds nothing to it.
        manager = Manager(make_config(config_text(redis_url)), aredis, {}, NullMetrics(), stop_grace=1.0)
        try:
            await manager.run_once(pools=[])
        finally:
            await manager.shutdown()
        assert r.get(K.ondemand_clone_tasks()) == "0"
        assert r.get(K.clone_tasks()) == "0" and api.get("/api/v3/status?view=queue").json()["queue"]["cloning"] == 0
