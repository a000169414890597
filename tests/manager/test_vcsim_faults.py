"""The manager against a vCenter behind a faulty network (tests/faultproxy.py in front of the simulator):
what a real vCenter does all day never wastes a clone, leaves a VM behind, forgets a VM, or stalls a pool.

Each test checks the three figures of issue 19: no VM lost (Redis forgets none that vCenter still has),
none leaked (vCenter has none that Redis does not know), no clone wasted (clones started = VMs that
reached ready or are still pending).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import TEMPLATE, StartSim
from tests.faultproxy import Fault, FaultProxy, wait_for
from tests.manager import vcenter_faults as vf
from tests.manager.conftest import FakeClock, MakeManager, passes, states
from tests.redis_server import free_port
from tests.vcsim.server import VcsimServer
from vmpooler_core import clock as stamps
from vmpooler_core import provider_health
from vmpooler_core.config import Config
from vmpooler_core.keys import Keys
from vmpooler_core.provider import CloneSpec, VmFacts
from vmpooler_core.provider_health import UNREADY, VANISHED
from vmpooler_core.replies import Reservation
from vmpoolerd import confirm
from vmpoolerd.manager import Manager
from vmpoolerd.manager.readiness import RECHECK_AFTER, STRIKES

pytestmark = pytest.mark.vcsim
K = Keys()


@pytest.fixture(scope="module")
def sim() -> Iterator[VcsimServer]:
    yield from vf.sim_fixture()


@pytest.fixture
def proxy(sim: VcsimServer) -> Iterator[FaultProxy]:
    sim.set_clone_delay(0)
    with FaultProxy(sim.host, sim.port).start() as proxy:
        yield proxy
    sim.set_clone_delay(0)
    sim.set_clone_clash(0)


def clones(sim: VcsimServer) -> int:
    return int(sim.state()["clones_started"])


def tracked(sync_redis: redis.Redis, pool: str = "p") -> set[str]:
    return set().union(*states(sync_redis, pool).values())


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What would tell an operator something went wrong: failed clones and destroys, forgotten VMs."""
    words = ("clone failed", "destroy failed", "forgotten", "discovered")
    return [r.getMessage() for r in caplog.records if any(r.getMessage().startswith(w) for w in words)]


async def full(manager: Manager, sync_redis: redis.Redis, size: int, pool: str = "p") -> set[str]:
    await passes(manager, lambda: len(states(sync_redis, pool)["ready"]) == size and not
                 states(sync_redis, pool)["pending"], limit=40)
    return states(sync_redis, pool)["ready"]


def folder_facts(config: Config, folder: str) -> dict[str, VmFacts]:
    provider = vf.direct(config)
    try:
        return provider.list_vms("p", folder)
    finally:
        provider.close()


def agree(sim: VcsimServer, sync_redis: redis.Redis, folder: str, pool: str = "p") -> None:
    in_vcenter, in_redis = vf.vm_names(sim, folder), tracked(sync_redis, pool)
    assert in_vcenter == in_redis, f"leaked: {in_vcenter - in_redis}, lost: {in_redis - in_vcenter}"


async def start(make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, pools: str,
                manager_id: str | None = None, **app: object) -> tuple[Manager, Config]:
    config = vf.fault_config(proxy, sim, pools, **app)
    return await make_manager(config, manager_id=manager_id), config


async def test_idle_connections_closed_by_the_server_fail_nothing(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3))
    before = clones(sim)
    await full(manager, sync_redis, 3)
    proxy.idle_close = 0.2  # every burst below starts on connections the server has closed
    for _ in range(2):
        await asyncio.to_thread(wait_for, lambda: proxy.connections() == 0, 5, "the server closing them")
        for host in states(sync_redis, "p")["ready"]:
            await manager.inventory.move("p", host, "ready", "completed")  # a burst of destroys
        await full(manager, sync_redis, 3)
    assert not problems(caplog), problems(caplog)
    assert clones(sim) - before == 9, "no clone wasted"
    agree(sim, sync_redis, folder)


async def test_lost_clone_answers_are_adopted_not_wasted(make_manager: MakeManager, proxy: FaultProxy,
                                                         sim: VcsimServer, sync_redis: redis.Redis,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3))
    proxy.add(Fault("CloneVM_Task", "lose", count=2))
    before = clones(sim)
    await full(manager, sync_redis, 3)
    assert clones(sim) - before == 3 and not problems(caplog), problems(caplog)
    agree(sim, sync_redis, folder)


async def test_a_clone_whose_outcome_cannot_be_asked_stays_pending_and_is_adopted(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=1))
    sim.set_clone_delay(300)
    # The clone's answer is lost and vCenter stops answering at that moment: the provider cannot ask.
    proxy.add(Fault("CloneVM_Task", "lose", then=lambda: proxy.refuse()))
    before = clones(sim)
    await manager.run_once()
    await manager.drain()
    (pending,) = states(sync_redis, "p")["pending"]
    assert any(r.getMessage().startswith(f"clone outcome unknown pool=p vm={pending}") for r in caplog.records)
    proxy.accept()
    assert await full(manager, sync_redis, 1) == {pending}, "adopted when it turned up"
    assert clones(sim) - before == 1 and not problems(caplog), problems(caplog)
    agree(sim, sync_redis, folder)


async def test_a_name_vcenter_refuses_is_cloned_under_another(make_manager: MakeManager, proxy: FaultProxy,
                                                              sim: VcsimServer, sync_redis: redis.Redis,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=2))
    sim.set_clone_clash(1)  # FileAlreadyExists: a leftover folder of that name on the datastore
    await manager.run_once()
    await manager.drain()
    renamed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("clone name taken pool=p")]
    assert len(renamed) == 1 and "FileAlreadyExists" in renamed[0], renamed
    assert len(states(sync_redis, "p")["pending"] | states(sync_redis, "p")["ready"]) == 2, "no record left"
    await full(manager, sync_redis, 2)
    assert not problems(caplog), problems(caplog)
    assert sim.state()["clone_clashes_left"] == 0
    agree(sim, sync_redis, folder)


async def test_sessions_ending_mid_clone_fail_nothing(make_manager: MakeManager, proxy: FaultProxy,
                                                      sim: VcsimServer, sync_redis: redis.Redis,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3))
    sim.set_clone_delay(400)
    before = clones(sim)
    await manager.run_once()  # three clones under way
    vf.end_sessions(sim)
    await manager.drain()
    await full(manager, sync_redis, 3)
    assert clones(sim) - before == 3 and not problems(caplog), problems(caplog)
    agree(sim, sync_redis, folder)


async def left_pending(manager: Manager, sync_redis: redis.Redis, records: dict[str, str | None]) -> None:
    """Pending records as another pooler left them: `records` host -> the manager it names (None: the
    original's, which name none)."""
    assert await manager.ctx.leases.acquire(["p"]) == {"p"}
    now = stamps.stamp(manager.ctx.clock())
    for host, owner in records.items():
        made = await manager.inventory.reserve_clone("p", host, TEMPLATE, size=9, owner=manager.id, now=now)
        assert made is Reservation.RESERVED, made
        if owner is None:
            sync_redis.hdel(K.vm(host), "cloned_by")
        else:
            sync_redis.hset(K.vm(host), "cloned_by", owner)


async def test_pending_records_left_behind_are_resolved_in_a_pass_or_two(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis) -> None:
    folder = vf.fresh_folder()
    manager, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3))
    # Their clones never reached vCenter: vCenter shows neither the VMs nor a clone task for them.
    await left_pending(manager, sync_redis, {"left-original": None, "left-dead": "gone-manager"})
    before = clones(sim)
    await passes(manager, lambda: not {"left-original", "left-dead"} & tracked(sync_redis), limit=2)
    await full(manager, sync_redis, 3)
    assert clones(sim) - before == 3
    agree(sim, sync_redis, folder)


async def test_a_pending_record_whose_clone_still_runs_is_adopted(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis) -> None:
    folder = vf.fresh_folder()
    manager, config = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=1))
    await left_pending(manager, sync_redis, {"still-cloning": None})
    sim.set_clone_delay(1000)
    before = clones(sim)
    other = vf.direct(config)  # the other pooler's provider: its clone task is not one the manager waits for
    try:
        cloning = threading.Thread(target=other.clone, args=("p", CloneSpec(
            "still-cloning", TEMPLATE, folder, pooler_id=sync_redis.get(K.pooler_id()))))
        cloning.start()
        await asyncio.to_thread(wait_for, lambda: clones(sim) > before, 5, "the other pooler's clone running")
        for _ in range(2):
            await manager.run_once()
            await manager.drain()
        assert states(sync_redis, "p")["pending"] == {"still-cloning"}, "its clone task is still running"
        await asyncio.to_thread(cloning.join, 10)
    finally:
        other.close()
    assert await full(manager, sync_redis, 1) == {"still-cloning"}, "adopted when its clone ended"
    assert clones(sim) - before == 1
    agree(sim, sync_redis, folder)


async def test_a_pool_whose_folder_changes_under_its_vms(make_manager: MakeManager, proxy: FaultProxy,
                                                         sim: VcsimServer, sync_redis: redis.Redis,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    old, new = vf.fresh_folder(), vf.fresh_folder()
    first, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", old, size=3))
    ready = await full(first, sync_redis, 3)
    taken = sorted(ready)[0]
    await first.inventory.move("p", taken, "ready", "running")  # a user's VM
    await first.shutdown()
    before = clones(sim)
    # The operator points the pool at another folder; the VMs stay where they are.
    second, _ = await start(make_manager, proxy, sim, vf.pool_yaml("p", new, size=3), manager_id="second")
    await full(second, sync_redis, 3)
    assert not problems(caplog) and clones(sim) == before + 1, "none forgotten; one clone for the taken VM"
    assert states(sync_redis, "p")["running"] == {taken}
    assert any(f"{taken} found in folder {old}: tracked there" in r.getMessage() for r in caplog.records)
    # The user is done: the VM is destroyed where it is, not forgotten there.
    await second.inventory.move("p", taken, "running", "completed")
    await passes(second, lambda: taken not in vf.vm_names(sim, old) and taken not in tracked(sync_redis))
    assert vf.vm_names(sim, old) | vf.vm_names(sim, new) == tracked(sync_redis), "none leaked"


async def test_many_vms_vanishing_at_once_are_held_until_confirmed(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    manager, config = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3))
    ready = await full(manager, sync_redis, 3)
    remover = vf.direct(config)
    try:
        lone = sorted(ready)[0]
        remover.destroy("p", lone)  # one VM deleted by hand: forgotten, replaced
        await full(manager, sync_redis, 3)
        assert any(r.getMessage().startswith(f"forgotten pool=p vm={lone}") for r in caplog.records)
        ready = states(sync_redis, "p")["ready"]
        for host in ready:  # every VM out of sight at once
            remover.destroy("p", host)
    finally:
        remover.close()
    before = clones(sim)
    for _ in range(3):
        assert (await manager.run_once()).clones == 0
        await manager.drain()
    assert states(sync_redis, "p")["ready"] == ready and clones(sim) == before, "none forgotten, none cloned"
    health = (await provider_health.read(manager.config, manager.inventory))["vsphere"]
    assert health.degraded and health.pools["p"].kind == VANISHED, health
    assert "vmpoolerd --forget-vanished p" in health.pools["p"].detail
    await confirm.confirm(manager.inventory, "p")
    await full(manager, sync_redis, 3)
    assert not ready & tracked(sync_redis) and not sync_redis.exists(K.forget_vanished("p"))
    health = (await provider_health.read(manager.config, manager.inventory))["vsphere"]
    assert not health.degraded, health
    agree(sim, sync_redis, folder)


async def test_clone_through_a_stalled_answer(make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer,
                                              sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    config_provider = {"timeout": 1}
    config = vf.fault_config(proxy, sim, vf.pool_yaml("p", folder, size=2), provider=config_provider)
    manager = await make_manager(config)
    proxy.add(Fault("CloneVM_Task", "stall", seconds=2.5))  # longer than the 1 s the provider waits
    before = clones(sim)
    await full(manager, sync_redis, 2)
    proxy.clear()
    assert clones(sim) - before == 2 and not problems(caplog), problems(caplog)
    agree(sim, sync_redis, folder)


def _guest_listeners() -> tuple[int, dict[str, socket.socket]]:
    """One port with a listener on each of 127.0.0.2-254. A port free on 127.0.0.1 may be taken on another
    of them (another test's connection bound there): then another port."""
    for _ in range(20):
        port, listeners = free_port(), {}
        try:
            for n in range(2, 255):
                listeners[f"127.0.0.{n}"] = socket.create_server((f"127.0.0.{n}", port))
            return port, listeners
        except OSError:
            for listener in listeners.values():
                listener.close()
    raise AssertionError("no port free on all of 127.0.0.2-254 in 20 tries")


async def test_ready_vms_that_cannot_be_reached_are_checked_again_before_they_go(
        make_manager: MakeManager, proxy: FaultProxy, sim: VcsimServer, sync_redis: redis.Redis,
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    folder = vf.fresh_folder()
    # The simulator's guests answer on 127.0.0.2 and up: a listener on each stands for the guests' sshd.
    port, listeners = _guest_listeners()
    try:
        manager, config = await start(make_manager, proxy, sim, vf.pool_yaml("p", folder, size=3,
                                                                           ready_check="tcp",
                                                                           ready_check_port=port),
                                manager_lease_seconds=30)  # a probe of a name that does not resolve may take 5 s
        ready = await full(manager, sync_redis, 3)
        ips = {host: f.guest_ip for host, f in folder_facts(config, folder).items()}
        one = sorted(ready)[0]
        listeners.pop(str(ips[one])).close()  # its guest stops answering
        for wait in (0, RECHECK_AFTER, 2 * RECHECK_AFTER):
            assert one in states(sync_redis, "p")["ready"], "not retired on fewer failed checks"
            clock.advance(wait)
            await manager.run_once()
            await manager.drain()
        assert one not in states(sync_redis, "p")["ready"] | states(sync_redis, "p")["running"]
        await full(manager, sync_redis, 3)
        # Now none of them can be reached, from this side (a firewall, say): none is destroyed.
        ready = states(sync_redis, "p")["ready"]
        for listener in listeners.values():
            listener.close()
        before = clones(sim)
        for _ in range(STRIKES + 2):
            clock.advance(10 * RECHECK_AFTER)
            assert (await manager.run_once()).worked == ["p"]
            await manager.drain()
        assert states(sync_redis, "p")["ready"] == ready and clones(sim) == before
        health = (await provider_health.read(manager.config, manager.inventory))["vsphere"]
        assert health.pools["p"].kind == UNREADY and "none is destroyed" in health.pools["p"].detail, health
        listeners = {str(f.guest_ip): socket.create_server((str(f.guest_ip), port))
                     for f in folder_facts(config, folder).values()}
        clock.advance(10 * RECHECK_AFTER)
        await manager.run_once()
        health = (await provider_health.read(manager.config, manager.inventory))["vsphere"]
        assert not health.degraded and states(sync_redis, "p")["ready"] == ready, health
    finally:
        for listener in listeners.values():
            listener.close()
    agree(sim, sync_redis, folder)


async def test_a_vcenter_restart_in_the_middle_of_clones_fails_no_clone(
        start_sim: StartSim, make_manager: MakeManager, sync_redis: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = "vmpooler/restart"
    old = start_sim(folders=(folder,), clone_delay_ms=1000)
    with FaultProxy(old.host, old.port).start() as proxy:
        manager, _ = await start(make_manager, proxy, old, vf.pool_yaml("p", folder, size=3))
        await manager.run_once()
        await asyncio.to_thread(wait_for, lambda: clones(old) == 3, 5, "three clones running in vCenter")
        old.stop()  # restarted: the simulator keeps nothing, so the clones under way are lost with it
        new = start_sim(folders=(folder,), port=old.port)
        await manager.drain()
        await full(manager, sync_redis, 3)
    assert not [r for r in caplog.records if r.getMessage().startswith("clone failed")], problems(caplog)
    assert clones(new) == 3, "one clone per VM in the new vCenter"
    agree(new, sync_redis, folder)
