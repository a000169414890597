"""Issue 14: an operator stops today's original vmpooler and starts ours on the same Redis and
configuration, and nothing is lost. Redis is filled as the original leaves it (contract B3, its key names
and field values written out literally here, on purpose: they are what is being checked against
keys.py), then our API and manager run on it: ready VMs are handed out, running VMs keep their checkout,
lifetime, tags, snapshots, disks and tokens, the pool settings set through its API still hold, and the
manager carries on from where the original left off."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
import redis
from redis import asyncio as aioredis

from tests.api.conftest import PASSWORDS, MakeClient, config_text
from tests.api.helpers import basic, expect_json, expect_unauthorized
from tests.conftest import make_config
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.manager import Manager
from vmpoolerd.providers import build_providers, close_providers
from vmpoolerd.providers.dummy import DummyVm

TOKEN = "utpg2i2xswor6h8ttjhu3d47z53yy47y"
POOLS = """
dns_configs:
  one: {dns_class: dynamic-dns, domain: one.example.com}
providers: {dummy: {clone_time: 0, boot_time: 0}}
pools:
  - {name: pool1, alias: [poolone], size: 2, template: templates/pool1, provider: dummy, dns_plugin: one}
  - {name: pool2, size: 1, template: templates/pool2, provider: dummy, dns_plugin: one}
"""
APP = "  vm_checktime: 0\n  manager_loop_seconds: 0.2"
PDT = datetime.timezone(datetime.timedelta(hours=-7))


def ruby_time(hours_ago: float) -> str:
    """`Time#to_s` as the original writes its stamps, in a zone that is not UTC."""
    moment = datetime.datetime.now(PDT) - datetime.timedelta(hours=hours_ago)
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def leave_as_the_original_does(r: redis.Redis) -> None:
    today = datetime.date.today().isoformat()
    r.sadd("vmpooler__pools", "pool1", "pool2")
    r.hset("vmpooler__pool__pool1", mapping={"name": "pool1", "size": "2", "alias": "poolone",
                                            "template": "templates/pool1", "domain": "one.example.com"})
    for host in ("h1", "h2"):
        r.sadd("vmpooler__ready__pool1", host)
        r.hset(f"vmpooler__vm__{host}", mapping={
            "clone": ruby_time(3), "template": "pool1", "pool": "pool1", "domain": "one.example.com",
            "clone_time": "10.1", "ip": "10.0.0.5", "ready": ruby_time(2.9), "check": ruby_time(0.01)})
    # r1: checked out with a token, a lifetime, a tag, a snapshot and a disk; its checkout also put it in
    # the original's migration set.
    r.sadd("vmpooler__running__pool1", "r1", "r2")
    r.sadd("vmpooler__migrating__pool1", "r1")
    r.hset("vmpooler__active__pool1", mapping={"r1": ruby_time(1), "r2": ruby_time(2)})
    r.hset("vmpooler__vm__r1", mapping={
        "clone": ruby_time(5), "template": "pool1", "pool": "pool1", "domain": "one.example.com",
        "checkout": ruby_time(1), "token:token": TOKEN, "token:user": "jdoe", "lifetime": "48",
        "tag:project": "vmpooler", "snapshot:n4eb4kdtp7rwv4x158366vd9jhac8btq": ruby_time(0.5), "disk": "+8gb",
        "host": "host1", "migrated": "true"})
    r.hset("vmpooler__vm__r2", mapping={"clone": ruby_time(5), "template": "pool1", "pool": "pool1",
                                        "checkout": ruby_time(2)})
    # r3: past its lifetime; c1: returned, not yet destroyed; p1: still cloning when the original stopped.
    r.sadd("vmpooler__running__pool2", "r3")
    r.hset("vmpooler__active__pool2", "r3", ruby_time(30))
    r.hset("vmpooler__vm__r3", mapping={"template": "pool2", "pool": "pool2", "checkout": ruby_time(30),
                                        "lifetime": "12"})
    r.sadd("vmpooler__completed__pool1", "c1")
    r.hset("vmpooler__vm__c1", mapping={"template": "pool1", "pool": "pool1", "checkout": ruby_time(4)})
    r.sadd("vmpooler__pending__pool2", "p1")
    r.hset("vmpooler__vm__p1", mapping={"clone": ruby_time(0.02), "template": "pool2", "pool": "pool2",
                                        "domain": "one.example.com"})
    r.hset(f"vmpooler__token__{TOKEN}", mapping={"user": "jdoe", "created": ruby_time(100), "last": ruby_time(1)})
    # Its pool configuration API had pool1 at 3; it had prepared both templates.
    r.hset("vmpooler__config__poolsize", "pool1", "3")
    r.hset("vmpooler__template__prepared", mapping={"pool1": "templates/pool1", "pool2": "templates/pool2"})
    r.hset("vmpooler__lastboot", "pool1", ruby_time(2.9))
    r.set("vmpooler__tasks__clone", "7")  # its counter as its manager left it
    r.set("vmpooler__tasks__ondemandclone", "0")
    r.hset(f"vmpooler__boot__{today}", "pool1:h1", "30.5")
    r.hset(f"vmpooler__clone__{today}", "pool1:h1", "10.1")
    r.hset(f"vmpooler__tag__{today}", "r1:project", "vmpooler")
    # The VMs themselves, in the provider (as they would be in vCenter).
    for pool, hosts in (("pool1", ("h1", "h2", "r1", "r2", "c1")), ("pool2", ("r3", "p1"))):
        for host in hosts:
            r.hset(f"vmpooler__dummy__dummy__{pool}", host,
                   DummyVm(created=1.0, on=True, template=f"templates/{pool}").to_json())


def members(r: redis.Redis, key: str) -> set[str]:
    return set(r.smembers(key))  # type: ignore[arg-type]


async def manager_passes(redis_url: str, r: redis.Redis) -> list[str]:
    """Our manager on the same Redis, until it has caught up: returns the pools' ready VMs then."""
    config = make_config(config_text(redis_url, pools=POOLS, app=APP), VMPOOLER_REDIS_URL=redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    providers = build_providers(config)
    manager = Manager(config, client, providers, NullMetrics(), stop_grace=5.0)
    try:
        for _ in range(20):
            await manager.run_once()
            await manager.drain()
            if len(members(r, "vmpooler__ready__pool1")) == 3 and members(r, "vmpooler__ready__pool2") == {"p1"} \
                    and not r.hexists("vmpooler__dummy__dummy__pool1", "c1"):
                break
            await asyncio.sleep(0.05)
    finally:
        await manager.shutdown()
        close_providers(providers)
        await client.aclose()
    return sorted(members(r, "vmpooler__ready__pool1"))


def test_what_the_original_left_is_served_and_carried_on(make_client: MakeClient, r: redis.Redis,
                                                         redis_url: str) -> None:
    leave_as_the_original_does(r)
    jdoe = basic("jdoe", PASSWORDS["jdoe"])
    with make_client(pools=POOLS, app=APP, auth=True) as api:
        # A running VM: its checkout, lifetime, tags, snapshot, disk, host, through both API versions.
        r1 = expect_json(api.get("/api/v3/vm/r1.one.example.com"), True, 200)["r1"]
        assert (r1["state"], r1["lifetime"], r1["tags"], r1["disk"]) == ("running", 48, {"project": "vmpooler"},
                                                                           ["+8gb"])
        assert r1["snapshots"] == ["n4eb4kdtp7rwv4x158366vd9jhac8btq"] and (r1["host"], r1["migrated"]) == (
            "host1", "true")
        assert r1["remaining"] == pytest.approx(47, abs=0.05) and r1["fqdn"] == "r1.one.example.com"
        start = datetime.datetime.fromisoformat(r1["start_time"])
        assert start == datetime.datetime.strptime(r.hget("vmpooler__vm__r1", "checkout") or "", "%Y-%m-%d %H:%M:%S %z")
        assert expect_json(api.get("/api/v1/vm/r2"), True, 200)["r2"]["state"] == "running"
        # Its token, with the VMs it holds.
        assert list(expect_json(api.get("/api/v3/token", headers=jdoe), True, 200)) == ["ok", TOKEN]
        held = expect_json(api.get(f"/api/v3/token/{TOKEN}", headers=jdoe), True, 200)[TOKEN]
        assert held["vms"] == {"running": ["r1"]} and held["user"] == "jdoe"
        # Only that token changes or returns it.
        expect_unauthorized(api.put("/api/v3/vm/r1", json={"lifetime": 50}))
        expect_json(api.put("/api/v3/vm/r1", json={"lifetime": 50}, headers={"X-AUTH-TOKEN": TOKEN}), True, 200)
        expect_unauthorized(api.delete("/api/v3/vm/r1"))
        expect_json(api.delete("/api/v3/vm/r1", headers={"X-AUTH-TOKEN": TOKEN}), True, 200)
        assert members(r, "vmpooler__completed__pool1") == {"c1", "r1"}
        # A ready VM is handed out, its FQDN under the alias asked for; the original's size setting holds.
        taken = expect_json(api.post("/api/v3/vm", json={"poolone": "1"}), True, 200)["poolone"]["hostname"]
        assert taken in ("h1.one.example.com", "h2.one.example.com")
        pools = api.get("/api/v3/status").json()["pools"]
        assert (pools["pool1"]["max"], pools["pool1"]["lastBoot"]) == (3, r.hget("vmpooler__lastboot", "pool1"))
    left = ({"h1", "h2"} - {taken.split(".")[0]}).pop()

    ready = asyncio.run(manager_passes(redis_url, r))
    # The ready VM the original made is kept (its template is the one it prepared), pool1 filled to the
    # size the original's API set, the pending clone finished, the expired and returned VMs destroyed.
    assert left in ready and len(ready) == 3
    assert members(r, "vmpooler__ready__pool2") == {"p1"}
    assert members(r, "vmpooler__running__pool1") == {"r2", taken.split(".")[0]}
    for gone in ("r1", "c1"):
        assert not r.hexists("vmpooler__dummy__dummy__pool1", gone)
    assert not r.hexists("vmpooler__dummy__dummy__pool2", "r3") and not members(r, "vmpooler__running__pool2")
    assert r.get("vmpooler__tasks__clone") == "0"
    # Written back in the original's shapes, for a return to it: its template record, its pool records.
    assert r.hgetall("vmpooler__template__prepared") == {"pool1": "templates/pool1", "pool2": "templates/pool2"}
    new = (set(ready) - {"h1", "h2"}).pop()
    record = r.hgetall(f"vmpooler__vm__{new}")
    assert (record["template"], record["pool"]) == ("pool1", "pool1") and record["clone"] and record["ready"]
    assert r.hget("vmpooler__pool__pool1", "domain") == "one.example.com"
    assert json.loads(r.hget("vmpooler__dummy__dummy__pool1", new) or "{}")["template"] == "templates/pool1"


def test_an_api_process_without_pools_serves_those_the_managers_recorded(make_client: MakeClient,
                                                                       r: redis.Redis) -> None:
    # As the original's managers record them (and ours: tests/manager/test_pool_settings.py).
    r.sadd("vmpooler__pools", "pool1", "pool2")
    r.hset("vmpooler__pool__pool1", mapping={"name": "pool1", "size": "3", "alias": "poolone,one",
                                            "template": "templates/pool1", "domain": "one.example.com"})
    r.sadd("vmpooler__ready__pool1", "h1")
    r.hset("vmpooler__vm__h1", mapping={"template": "pool1", "pool": "pool1", "clone": ruby_time(1)})
    with make_client(pools="") as api:
        assert api.get("/api/v3/vm").json() == ["pool1", "pool2"]
        taken = expect_json(api.post("/api/v3/vm/one"), True, 200)
        assert taken == {"ok": True, "one": {"hostname": "h1.one.example.com"}}
        pools = api.get("/api/v3/status").json()["pools"]
        assert (pools["pool1"]["max"], pools["pool1"]["alias"]) == (3, ["poolone", "one"])
        assert pools["pool2"]["max"] == 0  # in the set without a record
