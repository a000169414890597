"""The manager against govmomi's vCenter simulator (tests/vcsim): the vSphere provider end to end.

These tests fail, never skip, when the simulator cannot be built or started, unless VMPOOLER_SKIP_VCSIM=1
(scripts/test installs Go and govmomi and builds it).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from pyVmomi import vim
from redis import asyncio as aioredis

from tests.conftest import TEMPLATE, StartSim, make_config
from tests.manager.conftest import FakeClock, MakeManager, MakeOther, passes, passes_for, states
from tests.manager.procs import FillWatch, ManagerProcess, wait_until
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port
from tests.vcsim.server import VcsimServer
from vmpooler_core import clock as stamps
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import CloneSpec
from vmpooler_core.request import from_path
from vmpoolerd import confirm
from vmpoolerd.manager import Manager
from vmpoolerd.providers.vsphere import VsphereProvider

pytestmark = pytest.mark.vcsim
K = Keys()
def vsphere_yaml(sim: VcsimServer, pools: str, redis_url: str | None = None, ready_check: str = "hostname",
                 **app: object) -> str:
    settings = {"task_limit": 4, "vm_checktime": 0, "manager_lease_seconds": 3, "manager_loop_seconds": 0.2,
                "manager_backoff_max": 0.5, **app}
    return "\n".join([
        f":redis:\n  url: {redis_url}" if redis_url else "",
        ":config:", *(f"  {k}: {v}" for k, v in settings.items()),
        ":providers:", "  :vsphere:", f"    server: {sim.host}", f"    port: {sim.port}",
        f"    username: {sim.user}", f"    password: {sim.password}", "    insecure: true",
        f"    ready_check: {ready_check}",
        ":pools:", pools])


def pool_yaml(name: str = "pool1", size: int = 3, **extra: object) -> str:
    lines = [f"  - name: {name}", f"    size: {size}", f"    template: {TEMPLATE}",
             f"    folder: vmpooler/{name}", "    provider: vsphere",
             *(f"    {k}: {v}" for k, v in extra.items())]
    return "\n".join(lines) + "\n"


def folder_vms(config: Config, pool: str = "pool1") -> dict[str, Any]:
    """The simulator's view of a pool folder, read with a provider of the test's own."""
    provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
    try:
        return provider.list_vms(pool, config.pool(pool).folder)
    finally:
        provider.close()


def vm_object(sim: VcsimServer, path: str) -> Any:
    from pyVim.connect import SmartConnect

    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                      disableSslCertValidation=True)
    return si.content.searchIndex.FindByInventoryPath(f"DC0/vm/{path}")


def agree(sync_redis: redis.Redis, config: Config, pool: str = "pool1",
          in_flight: frozenset[str] = frozenset()) -> None:
    in_vcenter = set(folder_vms(config, pool))
    in_redis = set().union(*states(sync_redis, pool).values())
    assert in_vcenter <= in_redis, f"unknown to Redis: {in_vcenter - in_redis}"
    assert in_redis - in_flight <= in_vcenter, f"missing from vCenter: {in_redis - in_flight - in_vcenter}"


async def filled(manager: Manager, sync_redis: redis.Redis, size: int = 3, pool: str = "pool1") -> set[str]:
    await passes(manager, lambda: len(states(sync_redis, pool)["ready"]) == size)
    return states(sync_redis, pool)["ready"]


async def test_fill_and_refill(start_sim: StartSim, make_manager: MakeManager, sync_redis: redis.Redis,
                               aredis: aioredis.Redis) -> None:
    sim = start_sim()
    config = make_config(vsphere_yaml(sim, pool_yaml(), prefix="vp-"))
    manager = await make_manager(config)
    ready = await filled(manager, sync_redis)
    facts = folder_vms(config)
    assert set(facts) == ready
    assert all(f.powered_on and f.guest_hostname == name and name.startswith("vp-")
               for name, f in facts.items())
    name = sorted(ready)[0]
    vm = vm_object(sim, f"vmpooler/pool1/{name}")
    extra = {o.key: o.value for o in vm.config.extraConfig}
    assert extra["guestinfo.hostname"] == name
    # The clone's notes: the original's fields, and the mark of this pooler (the id stored in Redis),
    # which the inventory reads back.
    note = json.loads(vm.config.annotation)
    assert note["created_by"] == sim.user and note["base_template"] == TEMPLATE and note["pool"] == "pool1"
    assert stamps.parse(note["creation_timestamp"])
    assert note["pooler_id"] == sync_redis.get(K.pooler_id()) == facts[name].pooler_id
    taken = (await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()
    await filled(manager, sync_redis)
    assert states(sync_redis, "pool1")["running"] == set(taken)
    assert len(folder_vms(config)) == 4
    agree(sync_redis, config)


async def test_lifetime_expiry_destroys_the_vm(start_sim: StartSim, make_manager: MakeManager,
                                               sync_redis: redis.Redis, aredis: aioredis.Redis,
                                               clock: FakeClock) -> None:
    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=2), vm_lifetime=1))
    manager = await make_manager(config)
    await filled(manager, sync_redis, size=2)
    host = (await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]
    clock.now = time.time() + 2 * 3600
    await passes(manager, lambda: host not in folder_vms(config))
    assert sync_redis.hget(K.vm(host), "destroy") and sync_redis.ttl(K.vm(host)) > 0
    assert host not in set().union(*states(sync_redis, "pool1").values())
    agree(sync_redis, config)


async def test_unknown_vm_in_the_folder_is_destroyed(start_sim: StartSim, make_manager: MakeManager,
                                                     sync_redis: redis.Redis) -> None:
    sim = start_sim()
    # Without a mark of ours, only purge_unconfigured has it destroyed (see test_unmarked_vm_is_left_alone).
    config = make_config(vsphere_yaml(sim, pool_yaml(size=1), purge_unconfigured="true"))
    manager = await make_manager(config)
    await filled(manager, sync_redis, size=1)
    stranger = VsphereProvider(config.providers["vsphere"], config.pool_index)
    stranger.clone("pool1", CloneSpec(name="stranger", template=TEMPLATE, folder="vmpooler/pool1"))
    stranger.close()
    await manager.run_once()
    assert states(sync_redis, "pool1")["discovered"] == {"stranger"}
    await passes(manager, lambda: "stranger" not in folder_vms(config))
    assert "stranger" not in set().union(*states(sync_redis, "pool1").values())
    assert len(states(sync_redis, "pool1")["ready"]) == 1


def left_alone(caplog: pytest.LogCaptureFixture, host: str) -> list[str]:
    """The WARNINGs saying `host` was left alone (one per VM, not one per pass)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith(f"left alone pool=pool1 vm={host}:")]


async def test_two_poolers_on_one_folder_leave_each_other_alone(start_sim: StartSim, make_manager: MakeManager,
                                                                other_pooler: MakeOther,
                                                                sync_redis: redis.Redis, aredis: aioredis.Redis,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # A staging copy of the production configuration, with a Redis of its own, on the same vCenter folder.
    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=2)))
    prod = await make_manager(config)
    await filled(prod, sync_redis, size=2)
    taken = [(await Checkout(config, Inventory(aredis), NullMetrics()).take(from_path("pool1"))).hosts()[0]]
    staging, staging_redis = await other_pooler(config)

    async def both_until(done: Callable[[], bool], then: int = 0) -> None:
        for _ in range(30):
            for manager in (prod, staging):
                await manager.run_once()
                await manager.drain()
            if done():
                break
        assert done(), "both pools full"
        for _ in range(then):  # passes enough for a found VM to be discovered, completed and destroyed
            for manager in (prod, staging):
                await manager.run_once()
                await manager.drain()

    def full() -> bool:
        return all(len(states(r, "pool1")["ready"]) == 2 for r in (sync_redis, staging_redis))

    await both_until(full)
    taken.append((await Checkout(config, staging.inventory, NullMetrics()).take(from_path("pool1"))).hosts()[0])
    await both_until(full, then=4)
    mine, theirs = (set().union(*states(r, "pool1").values()) for r in (sync_redis, staging_redis))
    assert len(mine) == len(theirs) == 3 and not mine & theirs
    assert set(folder_vms(config)) == mine | theirs, "no VM of either pooler destroyed"
    assert taken[0] in states(sync_redis, "pool1")["running"]
    assert taken[1] in states(staging_redis, "pool1")["running"]
    for r in (sync_redis, staging_redis):
        assert not states(r, "pool1")["discovered"] and not states(r, "pool1")["completed"]
    # Each pooler reported each of the other's VMs once, naming both ids.
    ids = {"prod": sync_redis.get(K.pooler_id()), "staging": staging_redis.get(K.pooler_id())}
    assert ids["prod"] and ids["staging"] and ids["prod"] != ids["staging"]
    for owner, hosts in (("prod", mine), ("staging", theirs)):
        other = ids["staging" if owner == "prod" else "prod"]
        for host in hosts:
            lines = left_alone(caplog, host)
            assert len(lines) == 1 and ids[owner] in lines[0] and other in lines[0], lines
            assert folder_vms(config)[host].pooler_id == ids[owner]


async def test_vm_of_ours_whose_record_is_lost_is_destroyed(start_sim: StartSim, make_manager: MakeManager,
                                                            sync_redis: redis.Redis) -> None:
    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=2)))
    manager = await make_manager(config)
    lost = sorted(await filled(manager, sync_redis, size=2))[0]
    sync_redis.srem(K.ready("pool1"), lost)
    sync_redis.delete(K.vm(lost))
    await manager.run_once()
    assert lost in states(sync_redis, "pool1")["discovered"], "it carries our mark"
    await passes(manager, lambda: lost not in folder_vms(config))
    await filled(manager, sync_redis, size=2)
    agree(sync_redis, config)


async def test_unmarked_vm_is_left_alone(start_sim: StartSim, make_manager: MakeManager, sync_redis: redis.Redis,
                                         caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=1)))
    manager = await make_manager(config)
    await filled(manager, sync_redis, size=1)
    # Made by hand, or by the original vmpooler (its note: name, created_by, base_template, creation time).
    stranger = VsphereProvider(config.providers["vsphere"], config.pool_index)
    original = json.dumps({"name": "ruby", "created_by": "user", "base_template": TEMPLATE,
                           "creation_timestamp": "2026-01-01 00:00:00 +0000"})
    stranger.clone("pool1", CloneSpec(name="by-hand", template=TEMPLATE, folder="vmpooler/pool1"))
    stranger.clone("pool1", CloneSpec(name="ruby", template=TEMPLATE, folder="vmpooler/pool1", annotation=original))
    stranger.close()
    for _ in range(4):
        await manager.run_once()
        await manager.drain()
    assert {"by-hand", "ruby"} <= set(folder_vms(config))
    assert not {"by-hand", "ruby"} & set().union(*states(sync_redis, "pool1").values())
    for host in ("by-hand", "ruby"):
        lines = left_alone(caplog, host)
        assert len(lines) == 1 and "purge_unconfigured" in lines[0], lines
        assert folder_vms(config)[host].pooler_id is None


async def test_pending_timeout_when_the_port_never_opens(start_sim: StartSim, make_manager: MakeManager,
                                                         sync_redis: redis.Redis, clock: FakeClock) -> None:
    closed = free_port()
    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=2, timeout=5, ready_check_port=closed),
                                      ready_check="tcp"))
    manager = await make_manager(config)
    await manager.run_once()
    await manager.drain()
    stuck = states(sync_redis, "pool1")["pending"]
    assert len(stuck) == 2 and set(folder_vms(config)) == stuck
    await manager.run_once()
    assert states(sync_redis, "pool1")["pending"] == stuck, "port closed: not ready"
    clock.advance(6 * 60)
    await passes(manager, lambda: not stuck & set(folder_vms(config)))
    assert not stuck & set().union(*states(sync_redis, "pool1").values())


async def test_tcp_ready_check_on_the_guest_ip(start_sim: StartSim, make_manager: MakeManager,
                                               sync_redis: redis.Redis) -> None:
    # The simulator hands its guests 127.0.0.2, .3, ...: listen on the test's port at those addresses
    # (loopback only), and the VMs become ready through their guest IP.
    port = free_port()
    listeners = [socket.create_server((f"127.0.0.{n}", port)) for n in range(2, 8)]
    try:
        config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=2, ready_check_port=port),
                                          ready_check="tcp"))
        manager = await make_manager(config)
        ready = await filled(manager, sync_redis, size=2)
        # Recorded for `GET /vm/<host>`'s ip: vSphere's guest IP, not a DNS lookup of the name.
        assert all(str(sync_redis.hget(K.vm(host), "ip")).startswith("127.0.0.") for host in ready)
    finally:
        for listener in listeners:
            listener.close()


async def test_failed_clones(start_sim: StartSim, make_manager: MakeManager, sync_redis: redis.Redis) -> None:
    sim = start_sim(clone_fail_percent=100)
    config = make_config(vsphere_yaml(sim, pool_yaml(size=2)))
    manager = await make_manager(config)
    await manager.run_once()
    await manager.drain()
    assert sim.state()["clones_failed"] == 2
    assert not any(states(sync_redis, "pool1").values()) and not folder_vms(config)
    hashes = list(sync_redis.scan_iter(K.vm("*")))
    assert len(hashes) == 2 and all(sync_redis.ttl(h) > 0 for h in hashes)
    sim.set_clone_fail(0)
    await filled(manager, sync_redis, size=2)
    agree(sync_redis, config)


async def test_vcenter_outage(start_sim: StartSim, make_manager: MakeManager, sync_redis: redis.Redis,
                              caplog: pytest.LogCaptureFixture) -> None:
    sim = start_sim()
    config = make_config(vsphere_yaml(sim, pool_yaml()))
    manager = await make_manager(config)
    before = await filled(manager, sync_redis)
    port = sim.port
    sim.stop()
    for _ in range(5):
        report = await manager.run_once()
        assert report.worked == [] and report.clones == 0
        assert states(sync_redis, "pool1")["ready"] == before, "an outage is not an empty vCenter"
        await manager.drain()
        time.sleep(0.1)
    down = [r for r in caplog.records if "provider vsphere unavailable" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING
    # The simulator comes back on the same address, empty (it keeps no state): the VMs Redis knew are
    # gone, and once an operator confirms it (all of them vanished at once: reconcile.py holds them until
    # then), the manager forgets them and fills the pool again.
    start_sim(port=port)
    await confirm.confirm(manager.inventory, "pool1")
    await passes_for(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 3 and not before
                     & set().union(*states(sync_redis, "pool1").values()), seconds=15)
    assert len([r for r in caplog.records if "provider vsphere available again" in r.getMessage()]) == 1
    agree(sync_redis, config)


async def test_clone_target_datastore_disk_and_snapshot(start_sim: StartSim, make_manager: MakeManager,
                                                        sync_redis: redis.Redis,
                                                        aredis: aioredis.Redis) -> None:
    from vmpooler_core import vms

    sim = start_sim()
    config = make_config(vsphere_yaml(sim, pool_yaml(size=1, clone_target="DC0_C0", datastore="LocalDS_0")))
    manager = await make_manager(config)
    host = sorted(await filled(manager, sync_redis, size=1))[0]
    vm = vm_object(sim, f"vmpooler/pool1/{host}")
    assert vm.runtime.host.parent.name == "DC0_C0"
    disks_before = sum(isinstance(d, vim.vm.device.VirtualDisk) for d in vm.config.hardware.device)
    inventory = Inventory(aredis)
    await vms.request_disk(inventory, host, "4")
    snapshot = await vms.request_snapshot(inventory, host)
    await manager.run_once()
    await manager.drain()
    data = sync_redis.hgetall(K.vm(host))
    assert data["disk"] == "+4gb" and data[f"snapshot:{snapshot}"]
    vm = vm_object(sim, f"vmpooler/pool1/{host}")
    disks = sum(isinstance(d, vim.vm.device.VirtualDisk) for d in vm.config.hardware.device)
    assert disks == disks_before + 1
    assert vm.snapshot.rootSnapshotList[0].name == snapshot
    await vms.request_revert(inventory, host, data, snapshot)
    assert (await manager.run_once()).tasks == 1
    await manager.drain()
    assert not sync_redis.scard(K.revert_tasks())


# Real processes ----------------------------------------------------------------------------------

@pytest.mark.slow
async def test_kill_9_mid_clone_then_restart(start_sim: StartSim, tmp_path: Path, redis_url: str,
                                             sync_redis: redis.Redis, make_manager: MakeManager) -> None:
    sim = start_sim(clone_delay_ms=1500)
    text = vsphere_yaml(sim, pool_yaml(size=6), redis_url=redis_url, task_limit=3)
    (tmp_path / "vmpooler.yaml").write_text(text)
    with ManagerProcess(tmp_path / "vmpooler.yaml", "m1", tmp_path / "m1.log").start() as process:
        wait_until(lambda: sim.state()["clones_started"] >= 3, 20, "clones running in vCenter")
        process.kill()
    # The clones the dead manager started go on in vCenter; wait for them, as a restart would find them.
    def settled() -> bool:
        state = sim.state()
        return bool(state["clones_started"] == state["clones_succeeded"] + state["clones_failed"])

    wait_until(settled, 20, "vCenter done with the old clones")
    sim.set_clone_delay(0)
    restarted = await make_manager(make_config(text), manager_id="m1")
    await restarted.run_once()
    agree(sync_redis, restarted.config, in_flight=frozenset(restarted.cloner.hosts("pool1")))
    await filled(restarted, sync_redis, size=6)
    agree(sync_redis, restarted.config)
    assert len(folder_vms(restarted.config)) == 6


@pytest.mark.slow
def test_two_managers_one_killed(start_sim: StartSim, tmp_path: Path, redis_url: str,
                                 sync_redis: redis.Redis) -> None:
    sim = start_sim(folders=("vmpooler/a", "vmpooler/b"), clone_delay_ms=200)
    text = vsphere_yaml(sim, pool_yaml("a", size=3) + pool_yaml("b", size=3), redis_url=redis_url,
                        manager_lease_seconds=2)
    config_file = tmp_path / "vmpooler.yaml"
    config_file.write_text(text)

    def full(owner: str) -> bool:
        return all(sync_redis.get(K.lease(p)) == owner and sync_redis.scard(K.ready(p)) == 3 for p in "ab")

    with FillWatch(redis_url, ["a", "b"]) as watch, \
            ManagerProcess(config_file, "first", tmp_path / "first.log").start() as first:
        wait_until(lambda: full("first"), STARTUP_SECONDS, "first fills both pools")
        with ManagerProcess(config_file, "second", tmp_path / "second.log").start() as second:
            wait_until(lambda: "second" in sync_redis.zrange(K.heartbeats(), 0, -1), STARTUP_SECONDS,
                       "second running")
            for pool in "ab":
                for host in list(sync_redis.smembers(K.ready(pool)))[:2]:
                    sync_redis.smove(K.ready(pool), K.running(pool), host)
            first.kill()
            took = wait_until(lambda: all(sync_redis.get(K.lease(p)) == "second" for p in "ab"), 10,
                              "second takes over")
            # The 2 s lease, then the next pass of a manager process on a loaded machine: 2 s of room.
            assert took <= 2 + 2, f"take-over took {took:.1f}s with 2 s leases"
            wait_until(lambda: full("second"), 20, "second refills")
            assert second.stop() == 0, second.log()
    config = make_config(text)
    for pool in "ab":
        agree(sync_redis, config, pool)
        assert len(folder_vms(config, pool)) == 5
    assert watch.peak <= 3, f"a pool held {watch.peak} ready + pending VMs (size 3)"


def test_expired_session_is_renewed(start_sim: StartSim, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(vsphere_yaml(start_sim(), pool_yaml()))
    provider = VsphereProvider(config.providers["vsphere"], config.pool_index)
    try:
        provider.clone("pool1", CloneSpec("vm1", TEMPLATE, "vmpooler/pool1"))
        assert set(provider.list_vms("pool1", "vmpooler/pool1")) == {"vm1"}
        # vCenter ends the session (idle timeout, restart of its session service). The next inventory
        # must not come back empty-handed (the simulator then answers with nameless objects): it logs in
        # again and reads the folder as it is.
        provider.session._current.content.sessionManager.Logout()
        assert set(provider.list_vms("pool1", "vmpooler/pool1")) == {"vm1"}
        assert len([r for r in caplog.records if "logged in" in r.getMessage()]) == 2
        provider.session._current.content.sessionManager.Logout()
        provider.destroy("pool1", "vm1")
        assert provider.list_vms("pool1", "vmpooler/pool1") == {}
    finally:
        provider.close()
