"""The manager's report of its providers' health (issue 12, report 3), against the vCenter simulator: what
it publishes to Redis, and the verdicts /healthcheck, `vmpoolerd --check` and /status build from it.
(tests/daemon/test_provider_health.py runs the same through real daemons, the API and the CLI.)"""

from __future__ import annotations

import time

import redis
from redis import asyncio as aioredis

from tests.conftest import StartSim, make_config
from tests.manager.conftest import MakeManager, passes, passes_for, states
from tests.manager.test_vcsim import pool_yaml, vsphere_yaml
from vmpooler_core import health, provider_health, status
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.provider import ProviderUnavailable
from vmpoolerd.manager.health_report import CLONE_FAILURES, HealthReport

K = Keys()


async def test_a_wrong_password_is_reported_and_cleared_once_the_login_works(
        start_sim: StartSim, make_manager: MakeManager, aredis: aioredis.Redis,
        sync_redis: redis.Redis) -> None:
    sim = start_sim(password="not-what-the-config-says")
    text = vsphere_yaml(sim, pool_yaml(size=2)).replace(f"password: {sim.password}", "password: right-one")
    config = make_config(text)
    manager = await make_manager(config)
    inventory = Inventory(aredis)
    await manager.run_once()

    verdict = await health.check(manager.config, inventory)
    assert verdict["ok"] is False and verdict["redis"] is True and verdict["managers"] == 1, verdict
    assert verdict["reason"].startswith("provider vsphere cannot log in since "), verdict
    assert "(InvalidLogin)" in verdict["reason"] and "right-one" not in str(verdict)
    vsphere = verdict["providers"]["vsphere"]
    assert (vsphere["ok"], vsphere["state"], vsphere["problem"]) == (False, "degraded", "login"), vsphere
    assert vsphere["reason"].startswith("cannot log in: ")
    assert provider_health.iso(time.time() - 60) <= vsphere["since"] <= provider_health.iso(time.time())
    doc = await status.status(manager.config, inventory)
    assert doc["providers"]["vsphere"] == vsphere
    assert doc["pools"]["pool1"]["reason"].startswith(f"provider vsphere cannot log in since {vsphere['since']}: ")
    assert list(doc) == sorted(doc)

    # The vCenter comes back on the same address accepting the configured password: the same manager
    # logs in, fills the pool, and reports the provider ok.
    port = sim.port
    sim.stop()
    start_sim(port=port, password="right-one")
    await passes_for(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 2, seconds=20)
    verdict = await health.check(manager.config, inventory)
    assert (verdict["ok"], verdict["reason"]) == (True, "healthy"), verdict
    assert verdict["providers"] == {"vsphere": {"ok": True, "state": "ok"}}
    doc = await status.status(manager.config, inventory)
    assert "reason" not in doc["pools"]["pool1"] and doc["providers"]["vsphere"]["state"] == "ok"


async def test_clones_failing_in_a_row_degrade_the_pool_until_one_works(
        start_sim: StartSim, make_manager: MakeManager, aredis: aioredis.Redis,
        sync_redis: redis.Redis) -> None:
    sim = start_sim(clone_fail_percent=100)
    manager = await make_manager(make_config(vsphere_yaml(sim, pool_yaml(size=CLONE_FAILURES - 1))))
    inventory = Inventory(aredis)
    await manager.run_once()
    await manager.drain()
    assert sim.state()["clones_failed"] == CLONE_FAILURES - 1
    verdict = await health.check(manager.config, inventory)
    assert verdict["ok"] is True, "fewer failures in a row than CLONE_FAILURES are not an outage"

    await passes(manager, lambda: sim.state()["clones_failed"] >= CLONE_FAILURES)
    await manager.run_once()
    verdict = await health.check(manager.config, inventory)
    assert verdict["ok"] is False, verdict
    assert verdict["reason"].startswith("provider vsphere fails to clone for pool pool1 since "), verdict
    assert verdict["reason"].endswith(": vsphere vsphere: vcsim: injected clone failure"), verdict
    vsphere = verdict["providers"]["vsphere"]
    assert vsphere["state"] == "degraded" and "problem" not in vsphere, "the provider itself answers"
    assert vsphere["pools"]["pool1"]["problem"] == "clone"
    doc = await status.status(manager.config, inventory)
    assert doc["pools"]["pool1"]["reason"].startswith("provider vsphere fails to clone since ")

    sim.set_clone_fail(0)
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == CLONE_FAILURES - 1)
    await manager.run_once()
    verdict = await health.check(manager.config, inventory)
    assert (verdict["ok"], verdict["providers"]["vsphere"]) == (True, {"ok": True, "state": "ok"}), verdict


async def test_a_report_goes_stale_and_a_clean_stop_withdraws_it(
        start_sim: StartSim, make_manager: MakeManager, aredis: aioredis.Redis,
        sync_redis: redis.Redis) -> None:
    sim = start_sim(password="other")
    manager = await make_manager(make_config(vsphere_yaml(sim, pool_yaml(size=1)).replace(
        f"password: {sim.password}", "password: wrong")))
    inventory = Inventory(aredis)
    await manager.run_once()
    key = K.provider_health("vsphere")
    assert set(sync_redis.hkeys(key)) == {manager.id} and 0 < sync_redis.pttl(key) <= 3 * 3000
    now = time.time()
    assert (await provider_health.read(manager.config, inventory, now))["vsphere"].state == "degraded"
    # One lease length without a refresh (a manager killed, or cut off from Redis): no longer news.
    later = now + manager.config.app.manager_lease_seconds + 1
    assert (await provider_health.read(manager.config, inventory, later))["vsphere"].state == "unknown"
    assert "providers" not in await status.status(manager.config, inventory, later)

    await manager.shutdown()
    assert not sync_redis.exists(key)


async def test_no_password_reaches_a_report(aredis: aioredis.Redis, sync_redis: redis.Redis) -> None:
    """Whatever a provider's error says, the configured password is not published (the errors we make do
    not contain it; an error text from a library might)."""
    config = make_config(":providers:\n  :vsphere:\n    server: vc.example.com\n    username: u\n"
                         "    password: Sw0rdfish!\n:pools:\n  - name: pool1\n    size: 1\n"
                         "    template: t\n    folder: vmpooler/pool1\n    provider: vsphere\n")
    report = HealthReport(Inventory(aredis), "m1", config)
    report.pool_failed("pool1", ProviderUnavailable("https://u:Sw0rdfish!@vc.example.com/sdk: refused"))
    await report.publish({"pool1"})
    raw = sync_redis.hget(K.provider_health("vsphere"), "m1")
    assert raw is not None and "Sw0rdfish" not in raw and "https://u:***@vc.example.com/sdk: refused" in raw
