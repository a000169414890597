"""Issue 14: an alias that is also another pool's name, as in the original's own v3 specs (contract B8.2:
pools pool1, pool2 and poolone, pool1 with `alias: poolone`). Today's original loads it and draws between
the two pools at random; we load it with a warning and serve the pool of that name first, then the alias's
pool, on both APIs, which is the seed's rule for v1 (the pool asked for, then its alias), each API keeping
its own answer key (v1: the pool that served; v3: the name asked for)."""

from __future__ import annotations

import logging

import pytest
import redis

from tests.api.conftest import MakeClient
from tests.api.helpers import expect_json, ready

POOLS = """
dns_configs:
  example: {dns_class: dynamic-dns, domain: example.com}
providers: {dummy: {}}
pools:
  - {name: pool1, alias: poolone, size: 1, provider: dummy, dns_plugin: example}
  - {name: pool2, size: 1, provider: dummy, dns_plugin: example}
  - {name: poolone, size: 1, provider: dummy, dns_plugin: example}
"""


def test_an_alias_named_as_another_pool_loads_and_serves_both(make_client: MakeClient, r: redis.Redis,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    with make_client(pools=POOLS) as api:
        [warning] = [rec.getMessage() for rec in caplog.records if "also the name of a pool" in rec.getMessage()]
        assert "pools[0].alias: alias 'poolone' of pool 'pool1'" in warning
        # B8.2 #2: only pool1 has a VM: a request for poolone gets it, under poolone on v3, pool1 on v1.
        ready(r, "pool1", "a1", "a2")
        body = expect_json(api.post("/api/v3/vm/poolone"), True, 200)
        assert list(body) == ["ok", "poolone"] and body["poolone"]["hostname"] in ("a1.example.com", "a2.example.com")
        assert list(expect_json(api.post("/api/v1/vm/poolone"), True, 200)) == ["ok", "pool1"]
        # The pool named poolone first, on both.
        ready(r, "pool1", "a3", "a4")
        ready(r, "poolone", "o1", "o2")
        assert expect_json(api.post("/api/v3/vm", json={"poolone": "1"}), True, 200)["poolone"]["hostname"] in (
            "o1.example.com", "o2.example.com")
        assert list(expect_json(api.post("/api/v1/vm", json={"poolone": "1"}), True, 200)) == ["ok", "poolone"]
        assert r.scard("vmpooler__ready__pool1") == 2
        # B8.2 #5: neither has a VM, pool2 has: 503, pool2's VM stays.
        r.delete("vmpooler__ready__pool1")
        ready(r, "pool2", "b1")
        for prefix in ("/api/v1", "/api/v3"):
            expect_json(api.post(f"{prefix}/vm/poolone"), False, 503)
        assert r.smembers("vmpooler__ready__pool2") == {"b1"}
        pools = api.get("/api/v3/status").json()["pools"]
        assert (pools["pool1"]["alias"], "alias" in pools["poolone"]) == (["poolone"], False)
        # On-demand: served by either (no backend_weight here).
        accepted = expect_json(api.post("/api/v3/ondemandvm", json={"poolone": "1"}), True, 201)
        requested = r.hget(f"vmpooler__odrequest__{accepted['request_id']}", "requested")
        assert requested in ("poolone:poolone:1", "poolone:pool1:1")
