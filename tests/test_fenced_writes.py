"""Issue 20: "a write can never succeed on a demoted primary", for every client. The checkouts, returns and
state changes were fenced scripts already (tests/test_failover.py); here the rest: the manager's
bookkeeping (the pooler id, clone statistics, the empty marker, check stamps, lifetimes, the pools' list,
the providers' health reports, the dashboard's samples) and the dummy provider's VMs, written by the
blocking client. Before, these were plain commands, which a primary that has just lost its replica to a
promotion accepts, then throws away when Sentinel demotes it: a pooler id claimed twice, a dummy VM lost
while the inventory holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis

from tests.conftest import make_config
from tests.processes import terminate
from tests.sentinels import MASTER, sentinel_group, until
from vmpooler_core import pool_history
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.pool_history import PoolFigures
from vmpooler_core.primary import FailingOver
from vmpooler_core.provider import CloneSpec, ProviderUnavailable
from vmpooler_core.redis_client import connect, connect_blocking
from vmpoolerd.manager.health_report import HealthReport
from vmpoolerd.providers.dummy import DummyProvider

K = Keys()
POOL = "pool1"


def _everything(primary: redis.Redis) -> dict[str, object]:
    """Every key of the primary with its value, to show that a refused write changed nothing."""
    found: dict[str, object] = {}
    for key in primary.keys("*"):
        kind = primary.type(key)
        found[key] = {"string": primary.get, "hash": primary.hgetall, "set": primary.smembers,
                      "list": lambda k: primary.lrange(k, 0, -1)}.get(kind, primary.type)(key)
    return found


async def test_a_fenced_primary_refuses_the_managers_and_the_providers_writes_whole() -> None:
    with sentinel_group() as group:
        config = make_config(f"redis:\n  sentinels: {group.sentinels_yaml}\n  master: {MASTER}\n  socket_timeout: 1\n"
                             f"providers: {{dummy: {{clone_time: 0}}}}\n"
                             f"pools:\n  - {{name: {POOL}, size: 1}}\n")
        client = connect(config.redis)
        blocking = connect_blocking(config.redis)
        inventory = Inventory(client)
        provider = DummyProvider(config.providers["dummy"], blocking, config.pool_index)
        report = HealthReport(inventory, "manager-1", config)
        try:
            primary = group.client(group.primary_port())
            # The fence records the replica; and enough connections for what follows are made while the
            # sentinels can still name the primary.
            await asyncio.gather(*(inventory.register_pools([POOL]) for _ in range(12)),
                                 *(client.ping() for _ in range(12)))
            assert len(str(primary.get(K.replicas())).split()) == 2
            provider.clone(POOL, CloneSpec(name="vm-before", template="t", folder=POOL))
            assert "vm-before" in provider.list_vms(POOL, None)

            # The replica leaves and no sentinel can say whether it is being promoted: the case of a
            # planned failover whose switch the sentinels have not yet announced.
            replica = next(server for server in group.servers if server.port != group.primary_port())
            for proc in group.procs:
                terminate(proc)
            replica.stop()
            until(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "the primary sees it go")
            before = _everything(primary)
            report.pool_read(POOL)

            writes: dict[str, Callable[[], Awaitable[object]]] = {
                "claim_pooler_id": lambda: inventory.claim_pooler_id("pooler-x"),
                "record_clone": lambda: inventory.record_clone(POOL, "vm-a", 3.5),
                "record_boot": lambda: inventory.record_boot(POOL, "vm-a", 1.5),
                "mark_empty": lambda: inventory.mark_empty(POOL, True),
                "set_field_many": lambda: inventory.set_field_many(["vm-a", "vm-b"], "check", "now"),
                "start_lifetime": lambda: inventory.start_lifetime(POOL, "vm-a", "now"),
                "register_pools": lambda: inventory.register_pools(["pool2"]),
                "health report": lambda: report.publish([POOL]),  # (a pool read: a report to publish)
                "pool samples": lambda: pool_history.take(inventory, [PoolFigures(POOL, 1)]),
            }
            # At once: the fenced calls share one look at the (absent) sentinels, a second's timeout.
            answers = await asyncio.gather(*(write() for write in writes.values()), return_exceptions=True)
            for name, answer in zip(writes, answers, strict=True):
                assert isinstance(answer, FailingOver), f"{name} was not refused: {answer!r}"
            with pytest.raises(ProviderUnavailable, match="refuses writes"):
                provider.clone(POOL, CloneSpec(name="vm-after", template="t", folder=POOL))
            with pytest.raises(ProviderUnavailable, match="refuses writes"):
                provider.destroy(POOL, "vm-before")
            assert _everything(primary) == before
        finally:
            provider.close()
            await client.aclose()
