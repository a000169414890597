"""On-demand requests end to end: a real Redis, real managers (in-process, and a process killed with -9), the
dummy provider and the vCenter simulator. A request is made as the API makes it (vmpooler_core.provisioning)
and followed as the API reads it, until its VMs are checked out to it; the API's own codes and shapes are in
tests/api/test_ondemand_api.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import StartSim, make_config
from tests.manager.conftest import FakeClock, MakeManager, dummy_config, passes, passes_for, states
from tests.manager.procs import ManagerProcess, wait_until
from vmpooler_core.auth import hash_password
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.ondemand import Wanted
from vmpooler_core.ondemand_store import RequestState
from vmpooler_core.provisioning import Provisioning
from vmpoolerd.api.routes_ondemand import status_document

K = Keys()
POOLS = """
  - name: p1
    size: 0
    alias: [any]
    clone_target: c1
  - name: p2
    size: 0
    alias: [any]
    clone_target: c2
  - name: steady
    size: 2
"""


def provider_vms(sync_redis: redis.Redis, pool: str) -> set[str]:
    return set(sync_redis.hkeys(K.dummy_folder("dummy", pool)))


def known(sync_redis: redis.Redis, pool: str) -> set[str]:
    return set().union(*states(sync_redis, pool).values())


def delivered(state: RequestState) -> list[str]:
    return sorted(host for hosts in state.delivered.values() for host in hosts)


class Client:
    """A client of the API, through the core the API runs: make a request, read it."""

    def __init__(self, config: Config, aredis: aioredis.Redis) -> None:
        self.provisioning = Provisioning(config, Inventory(aredis))
        self.state: RequestState | None = None

    async def ask(self, *counts: tuple[str, int], token: str | None = None) -> str:
        return await self.provisioning.submit(Wanted(tuple(counts)), token)

    async def read(self, request_id: str) -> RequestState:
        self.state = await self.provisioning.status(request_id)
        return self.state


async def test_a_request_is_filled_beside_the_refills(make_manager: MakeManager, aredis: aioredis.Redis,
                                                      sync_redis: redis.Redis) -> None:
    config = make_config(f"""
:config: {{task_limit: 3, vm_checktime: 0, manager_loop_seconds: 0.2, vm_lifetime_auth: 2,
          backend_weight: {{c1: 1, c2: 1}}}}
:auth: {{provider: users, users: {{jdoe: '{hash_password("pw", iterations=1000)}'}}}}
:providers:
  :dummy: {{clone_time: 0, boot_time: 0}}
:pools:
{POOLS}""")
    sync_redis.hset(K.token("tok"), mapping={"user": "jdoe", "created": "2026-01-01 00:00:00 +0000"})
    client = Client(config, aredis)
    request_id = await client.ask(("any", 4), ("p2", 1), token="tok")
    manager = await make_manager(config)
    used = await passes(manager, lambda: bool(sync_redis.hget(K.ondemand_request(request_id), "status")))
    state = await client.read(request_id)
    assert state.status == "ready" and used <= 4
    hosts = delivered(state)
    assert len(hosts) == 5 and sum(part.count for part in state.parts) == 5
    assert {part.alias for part in state.parts} == {"any", "p2"}
    for (alias, pool), vms in state.delivered.items():
        assert set(vms) <= states(sync_redis, pool)["running"]
        for host in vms:
            vm = sync_redis.hgetall(K.vm(host))
            assert vm["request_id"] == request_id and vm["pool_alias"] == alias and vm["pool"] == pool
            assert vm["token:token"] == "tok" and vm["token:user"] == "jdoe" and vm["lifetime"] == "2"
            assert sync_redis.hget(K.active(pool), host) == vm["checkout"]
    assert sync_redis.smembers(K.held("tok")) == set(hosts), "the token holds them, as after a checkout"
    assert len(states(sync_redis, "steady")["ready"]) == 2, "the refills went on beside"
    assert not states(sync_redis, "p1")["ready"] and not states(sync_redis, "p2")["ready"]
    assert not sync_redis.zcard(K.ondemand_tasks()) and not sync_redis.zcard(K.ondemand_processing())
    assert 2_592_000 - 5 < sync_redis.ttl(K.ondemand_request(request_id)) <= 2_592_000
    code, doc = status_document(state, config)
    assert code == 200 and sorted(doc["any"]["hostname"] + doc["p2"]["hostname"]) == hosts
    # Deleted: its VMs go back and are destroyed; nothing is left in the provider.
    assert await client.provisioning.delete(request_id, "tok")
    await passes(manager, lambda: not provider_vms(sync_redis, "p1") | provider_vms(sync_redis, "p2"))
    assert not known(sync_redis, "p1") | known(sync_redis, "p2") and not sync_redis.scard(K.held("tok"))


async def test_a_big_request_does_not_starve_the_refills(make_manager: MakeManager, aredis: aioredis.Redis,
                                                         sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, dummy="clone_time: 0.1\n    boot_time: 0", task_limit=2,
                          max_ondemand_instances_per_request=12)
    client = Client(config, aredis)
    request_id = await client.ask(("p1", 12))  # six rounds of two clones
    manager = await make_manager(config)
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run_forever(stop))
    try:
        deadline = time.monotonic() + 20
        while len(states(sync_redis, "steady")["ready"]) < 2:
            assert time.monotonic() < deadline and not running.done(), "the refills never ran"
            await asyncio.sleep(0.01)
        assert not sync_redis.hget(K.ondemand_request(request_id), "status"), "refilled beside the request"
        while not sync_redis.hget(K.ondemand_request(request_id), "status"):
            assert time.monotonic() < deadline and not running.done(), "the request was never filled"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await running
    assert len(delivered(await client.read(request_id))) == 12


async def test_failed_clones_are_retried_then_the_request_fails(make_manager: MakeManager, aredis: aioredis.Redis,
                                                               sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, dummy="clone_time: 0\n    boot_time: 0\n    clone_fail_percent: 100",
                          max_vm_retries=2)
    client = Client(config, aredis)
    request_id = await client.ask(("p1", 2))
    manager = await make_manager(config)
    await passes(manager, lambda: bool(sync_redis.hget(K.ondemand_request(request_id), "status")))
    state = await client.read(request_id)
    assert state.status == "failed" and state.failure_reason and "injected failure" in state.failure_reason
    assert sync_redis.hget(K.ondemand_request(request_id), "retry_count") == "3"
    code, doc = status_document(state, config)
    assert code == 200 and doc["ready"] is False and doc["message"].startswith("The request failed: clone failed")
    assert not known(sync_redis, "p1") and not provider_vms(sync_redis, "p1")
    assert not sync_redis.zcard(K.ondemand_tasks()) and not sync_redis.zcard(K.ondemand_processing())


async def test_past_its_ttl_a_request_fails_and_gives_back_what_it_got(make_manager: MakeManager,
                                                                      aredis: aioredis.Redis,
                                                                      sync_redis: redis.Redis,
                                                                      clock: FakeClock) -> None:
    config = make_config("""
:config: {task_limit: 4, vm_checktime: 0, manager_loop_seconds: 0.2, ondemand_request_ttl: 1}
:providers:
  :dummy: {clone_time: 0, boot_time: 0}
  :sick: {provider_class: dummy, clone_time: 0, boot_time: 0, ready_fail_percent: 100}
:pools:
  - {name: p1, size: 0, provider: dummy}
  - {name: broken, size: 0, provider: sick}
""")
    clock.now = time.time()
    client = Client(config, aredis)
    request_id = await client.ask(("p1", 1), ("broken", 1))
    manager = await make_manager(config)
    await passes(manager, lambda: len(states(sync_redis, "p1")["running"]) == 1)
    [got] = states(sync_redis, "p1")["running"]
    assert len(states(sync_redis, "broken")["pending"]) == 1, "never boots"
    assert (await client.read(request_id)).status is None
    clock.advance(61)
    await passes(manager, lambda: bool(sync_redis.hget(K.ondemand_request(request_id), "status")))
    state = await client.read(request_id)
    assert state.status == "failed" and state.failure_reason is None
    assert status_document(state, config)[1]["message"].endswith("ondemand_request_ttl '1'")
    await passes(manager, lambda: got not in provider_vms(sync_redis, "p1"))
    assert not known(sync_redis, "p1"), "its VM was given back and destroyed"
    clock.advance(16 * 60)  # the broken VM times out: destroyed, and not cloned again for a failed request
    await passes(manager, lambda: not known(sync_redis, "broken") and not provider_vms(sync_redis, "broken"))
    assert not sync_redis.zcard(K.ondemand_tasks())


async def test_a_request_deleted_while_its_clones_run(make_manager: MakeManager, aredis: aioredis.Redis,
                                                      sync_redis: redis.Redis) -> None:
    config = dummy_config(POOLS, dummy="clone_time: 0.3\n    boot_time: 0")
    client = Client(config, aredis)
    request_id = await client.ask(("p1", 3))
    manager = await make_manager(config)
    await manager.run_once()  # clones started
    assert await client.provisioning.delete(request_id)
    await manager.drain()
    await passes(manager, lambda: not known(sync_redis, "p1") and not provider_vms(sync_redis, "p1"))
    state = await client.read(request_id)
    assert state.status == "deleted" and not delivered(state)


async def test_a_request_of_the_original_is_taken_over(make_manager: MakeManager, sync_redis: redis.Redis,
                                                       aredis: aioredis.Redis) -> None:
    """Redis as the original's daemons leave it mid-request: taken in, one VM cloned and still pending,
    three clones to go. Our manager delivers the one and clones the three."""
    now = int(time.time())
    sync_redis.hset(K.ondemand_request("r1"), "requested", "any:p1:4")
    sync_redis.zadd(K.ondemand_processing(), {"r1": now})
    sync_redis.zadd(K.ondemand_tasks(), {"any:p1:3:r1": now})
    sync_redis.hset(K.dummy_folder("dummy", "p1"), "theirs", '{"on": true, "boots_at": 0}')
    sync_redis.hset(K.vm("theirs"), mapping={"clone": "2026-01-01 00:00:00 +0000", "template": "p1", "pool": "p1",
                                             "request_id": "r1", "pool_alias": "any"})
    sync_redis.sadd(K.pending("p1"), "theirs")
    manager = await make_manager(dummy_config(POOLS))
    await passes(manager, lambda: sync_redis.hget(K.ondemand_request("r1"), "status") == "ready")
    assert sync_redis.scard(K.ondemand_vms("r1", "any", "p1")) == 4
    assert "theirs" in sync_redis.smembers(K.ondemand_vms("r1", "any", "p1"))
    assert provider_vms(sync_redis, "p1") == states(sync_redis, "p1")["running"]


@pytest.mark.slow
async def test_a_manager_killed_mid_request_loses_nothing(tmp_path: Path, redis_url: str, sync_redis: redis.Redis,
                                                          aredis: aioredis.Redis, make_manager: MakeManager) -> None:
    text = f"""
:redis:
  url: {redis_url}
:config: {{task_limit: 2, vm_checktime: 0, manager_lease_seconds: 2, manager_loop_seconds: 0.2}}
:providers:
  :dummy: {{clone_time: 0.4, boot_time: 0}}
:pools:
{POOLS}"""
    (tmp_path / "vmpooler.yaml").write_text(text)
    config = make_config(text)
    client = Client(config, aredis)
    request_id = await client.ask(("p1", 4), ("p2", 2))
    with ManagerProcess(tmp_path / "vmpooler.yaml", "first", tmp_path / "first.log").start() as first:
        wait_until(lambda: sync_redis.scard(K.running("p1")) >= 1 and sync_redis.get(K.clone_tasks()) == "2", 15,
                   "VMs delivered and clones in flight")
        first.kill()
    assert sync_redis.hget(K.ondemand_request(request_id), "status") is None, "killed mid-request"
    # Another manager takes the pools over once the dead one's leases expire, and fills the request.
    second = await make_manager(config, manager_id="second")
    await passes_for(second, lambda: bool(sync_redis.hget(K.ondemand_request(request_id), "status")), seconds=20)
    state = await client.read(request_id)
    assert state.status == "ready" and len(delivered(state)) == 6
    for pool, want in (("p1", 4), ("p2", 2)):
        assert states(sync_redis, pool)["running"] == set(state.delivered[pool, pool])
        assert len(states(sync_redis, pool)["running"]) == want and not states(sync_redis, pool)["pending"]
    # Whatever the dead manager left (clones cut short, VMs it cloned) is matched or destroyed: the provider
    # ends with exactly the request's VMs.
    await passes(second, lambda: all(provider_vms(sync_redis, p) == known(sync_redis, p) for p in ("p1", "p2")))
    assert provider_vms(sync_redis, "p1") | provider_vms(sync_redis, "p2") == set(delivered(state))


@pytest.mark.vcsim
async def test_on_the_vcenter_simulator(start_sim: StartSim, make_manager: MakeManager, aredis: aioredis.Redis,
                                        sync_redis: redis.Redis) -> None:
    from tests.manager.test_vcsim import agree, folder_vms, pool_yaml, vsphere_yaml

    config = make_config(vsphere_yaml(start_sim(), pool_yaml(size=0)))
    client = Client(config, aredis)
    request_id = await client.ask(("pool1", 3))
    manager = await make_manager(config)
    await passes(manager, lambda: bool(sync_redis.hget(K.ondemand_request(request_id), "status")))
    state = await client.read(request_id)
    assert state.status == "ready" and set(delivered(state)) == set(folder_vms(config))
    assert all(fact.powered_on and fact.guest_hostname == name for name, fact in folder_vms(config).items())
    agree(sync_redis, config)
    await client.provisioning.delete(request_id)
    await passes(manager, lambda: not folder_vms(config))
    agree(sync_redis, config)
