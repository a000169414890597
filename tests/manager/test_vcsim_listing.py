"""A pass reads every pool's inventory in one property query (vmpoolerd/manager/listing.py, the vSphere
provider's `list_pools`): its vSphere calls do not grow with the number of pools. Counted by the
simulator itself (tests/vcsim: the SOAP calls it answered, by method)."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from tests.conftest import TEMPLATE, StartSim, make_config
from tests.manager.conftest import MakeManager, passes, passes_for, states
from tests.manager.test_vcsim import pool_yaml, vsphere_yaml
from vmpooler_core.provider import CloneSpec, ProviderError
from vmpoolerd.manager import listing
from vmpoolerd.providers.vsphere import VsphereProvider

pytestmark = pytest.mark.vcsim
POOLS = [f"pool{i}" for i in range(1, 5)]


async def test_a_pass_costs_one_query_however_many_pools(start_sim: StartSim, make_manager: MakeManager,
                                                         sync_redis: redis.Redis) -> None:
    sim = start_sim(tuple(f"vmpooler/{name}" for name in POOLS))
    calls = {}
    for count in (1, len(POOLS)):
        sync_redis.flushdb()
        wanted = POOLS[:count]
        config = make_config(vsphere_yaml(sim, "".join(pool_yaml(name, size=2) for name in wanted)))
        manager = await make_manager(config)
        await passes(manager, lambda wanted=wanted: all(len(states(sync_redis, name)["ready"]) == 2
                                                        for name in wanted))
        before = sim.soap_calls()
        report = await manager.run_once()
        assert sorted(report.worked) == wanted and report.clones == 0
        calls[count] = sim.soap_calls() - before
        await manager.shutdown()
    # A pass over a filled pool, 1 pool or 4: the one inventory query, nothing else (the ready check
    # `hostname` reads what the query brought back).
    assert calls[1] == calls[len(POOLS)] == Counter({"RetrievePropertiesEx": 1}), calls


async def test_a_pool_whose_folder_is_gone_fails_alone(start_sim: StartSim, make_manager: MakeManager,
                                                       sync_redis: redis.Redis) -> None:
    sim = start_sim(("vmpooler/pool1", "vmpooler/pool2"))
    config = make_config(vsphere_yaml(sim, pool_yaml("pool1", size=1) + pool_yaml("ghost", size=1)
                                      + pool_yaml("pool2", size=1)))
    manager = await make_manager(config)
    report = await manager.run_once()
    assert sorted(report.worked) == ["pool1", "pool2"]
    assert "DC0/vm/vmpooler/ghost not found" in report.failed["ghost"]
    # Time-bounded, not a count of passes: a pool whose read failed is backed off from for a while.
    await passes_for(manager, lambda: all(len(states(sync_redis, name)["ready"]) == 1 for name in ("pool1", "pool2")),
                     seconds=30)
    assert not states(sync_redis, "ghost")["pending"]


def test_list_pools_reads_what_list_vms_reads(start_sim: StartSim) -> None:
    sim = start_sim(("vmpooler/pool1", "vmpooler/pool2", "vmpooler/empty"))
    config = make_config(vsphere_yaml(sim, pool_yaml("pool1") + pool_yaml("pool2") + pool_yaml("empty")
                                      + pool_yaml("twin").replace("vmpooler/twin", "vmpooler/pool1")
                                      + pool_yaml("ghost")))
    provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
    try:
        for name, folder in (("a1", "pool1"), ("a2", "pool1"), ("b1", "pool2")):
            provider.clone(folder, CloneSpec(name, TEMPLATE, f"vmpooler/{folder}"))
        folders = {pool.name: pool.folder for pool in config.pools}
        listed = provider.list_pools(folders)
        for name in ("pool1", "pool2", "empty", "twin"):
            assert listed[name] == provider.list_vms(name, folders[name]), name
        assert set(listed["pool1"]) == set(listed["twin"]) == {"a1", "a2"} and set(listed["pool2"]) == {"b1"}
        assert listed["empty"] == {}
        ghost = listed["ghost"]
        assert isinstance(ghost, ProviderError) and "vmpooler/ghost not found" in str(ghost)
        with pytest.raises(ProviderError, match="vmpooler/ghost not found"):
            provider.list_vms("ghost", folders["ghost"])
    finally:
        provider.close()


async def test_a_hundred_pools_read_at_once_do_not_exhaust_redis(start_sim: StartSim, make_manager: MakeManager,
                                                                  sync_redis: redis.Redis) -> None:
    """Their inventories arrive together: the pools' passes must not all take a Redis connection at once
    (the manager's client has 64; redis-py refuses the 65th with MaxConnectionsError, a failed pass)."""
    names = [f"p{i:03d}" for i in range(100)]
    sim = start_sim(tuple(f"vmpooler/{name}" for name in names))
    manager = await make_manager(make_config(vsphere_yaml(sim, "".join(pool_yaml(name, size=1) for name in names),
                                                          task_limit=50)))
    await passes(manager, lambda: all(states(sync_redis, name)["ready"] for name in names), limit=10)
    before = sim.soap_calls()
    report = await manager.run_once()
    assert len(report.worked) == 100 and not report.failed and report.clones == 0
    assert sim.soap_calls() - before == Counter({"RetrievePropertiesEx": 1})


async def test_a_clone_ending_after_the_read_is_not_taken_for_a_dead_one(start_sim: StartSim,
                                                                         make_manager: MakeManager,
                                                                         sync_redis: redis.Redis) -> None:
    """The pools' inventories are read first, their Redis records later (behind other pools' passes): a
    clone that starts and ends in between is pending in Redis and missing from the read."""
    sim = start_sim()
    manager = await make_manager(make_config(vsphere_yaml(sim, pool_yaml(size=1))))
    worker = manager.workers["pool1"]
    assert await manager.ctx.leases.acquire(["pool1"])
    read = (await listing.read_all(manager.ctx, manager.cloner, [(worker.pool, worker.provider)]))["pool1"]
    assert isinstance(read, listing.Listed) and read.facts == {}
    manager.cloner.start(worker.pool, worker.provider)
    await manager.cloner.drain()
    (host,) = states(sync_redis, "pool1")["pending"]
    before = sim.soap_calls()
    await worker.check(None, read)  # the pass from the read made before the clone
    assert states(sync_redis, "pool1")["pending"] | states(sync_redis, "pool1")["ready"] == {host}
    # Known to have just ended: not looked for in the whole datacenter as a pending VM gone missing.
    assert sim.soap_calls() - before == Counter()
    await manager.run_once()  # and the next pass, from a fresh read, takes it in
    assert states(sync_redis, "pool1")["ready"] == {host}
