"""A VM's IP: the provider's guest IP, recorded by the manager when the VM becomes ready, is what `GET
/vm/<host>` and `vmpooler show` report; a VM without one is looked up in DNS, as the original did."""

from __future__ import annotations

import redis
from redis import asyncio as aioredis

from tests.manager.conftest import MakeManager, dummy_config, passes, states
from vmpooler_core import vms
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys

K = Keys()


async def test_the_guest_ip_is_recorded_when_the_vm_becomes_ready(make_manager: MakeManager,
                                                                   sync_redis: redis.Redis,
                                                                   aredis: aioredis.Redis) -> None:
    config = dummy_config("  - name: pool1\n    size: 1\n",
                          dummy="clone_time: 0\n    boot_time: 0\n    guest_ip: 192.0.2.7")
    manager = await make_manager(config)
    await passes(manager, lambda: len(states(sync_redis, "pool1")["ready"]) == 1)
    host = next(iter(states(sync_redis, "pool1")["ready"]))
    assert sync_redis.hget(K.vm(host), "ip") == "192.0.2.7"
    # Recorded, so no DNS lookup is made for it (the name resolves nowhere).
    assert (await vms.describe(config, Inventory(aredis), host))["ip"] == "192.0.2.7"


async def test_without_a_recorded_ip_dns_answers(sync_redis: redis.Redis, aredis: aioredis.Redis) -> None:
    config = dummy_config("  - name: pool1\n    size: 0\n")
    sync_redis.hset(K.vm("localhost"), mapping={"pool": "pool1", "template": "pool1"})
    assert (await vms.describe(config, Inventory(aredis), "localhost"))["ip"] == "127.0.0.1"
    sync_redis.hset(K.vm("nosuchhost-vmpooler"), mapping={"pool": "pool1", "template": "pool1"})
    assert (await vms.describe(config, Inventory(aredis), "nosuchhost-vmpooler"))["ip"] == ""
