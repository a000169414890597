"""`vmpoolerd --forget-vanished POOL`: an operator confirms that the VMs which vanished from a pool all
at once are gone for good.

The manager never forgets many VMs on one inventory answer (manager/reconcile.py): it holds them, and
health says so, until they come back or this confirmation arrives. The confirmation is a key in Redis,
written behind the fence; the manager working the pool takes it on its next pass, forgets the VMs it
holds, and deletes it. It expires unused after CONFIRM_SECONDS, so a confirmation given when nothing was
held cannot wave through a later, unrelated loss.
"""

from __future__ import annotations

import asyncio

from vmpooler_core import clock
from vmpooler_core.config import Config
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.redis_client import connect

CONFIRM_SECONDS = 600


async def confirm(inventory: Inventory, pool: str) -> None:
    await inventory.write(("SET", inventory.keys.forget_vanished(pool), clock.stamp(), "EX", str(CONFIRM_SECONDS)))


def forget_vanished(config: Config, pool: str) -> str:
    """Write the confirmation for `pool`; the line to print. LookupError for a pool not configured."""
    if pool not in config.pool_index:
        raise LookupError(f"--forget-vanished: no pool {pool!r} in the configuration")

    async def write() -> None:
        client = connect(config.redis, max_connections=2)
        try:
            await confirm(Inventory(client, Keys(), config.redis.data_ttl), pool)
        finally:
            await client.aclose()

    asyncio.run(write())
    return (f"pool {pool}: the VMs that vanished from it at once will be forgotten on the manager's next "
            f"pass (this confirmation expires in {CONFIRM_SECONDS // 60} minutes if none are held)")
