"""The inventories a pass starts from: read for all the pools of a provider at once when it can (vSphere: one
property query for every folder, so a pass costs one call whether it covers 1 pool or 100); a provider
without such a query (the dummy one) has each pool read its own in its pass.

What each pool's clones in flight were is taken before the read, as a pool's own read does, and the
clones that end after it are known (`Cloner.ended_since`): a VM whose clone ends between the read and the
pool's Redis read is pending in Redis and missing from the inventory, and is not taken for a dead clone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vmpooler_core.config import PoolConfig
from vmpooler_core.provider import Listing, Provider, ProviderError, VmFacts

from .cloner import Cloner
from .context import Context

_TIMEOUT = 300.0  # seconds an inventory read may take before the pass gives up on it


@dataclass(frozen=True, slots=True)
class Listed:
    facts: dict[str, VmFacts]
    in_flight: set[str]  # the pool's clones in flight just before the read
    read_at: float  # monotonic, just before the read


async def read_one(ctx: Context, cloner: Cloner, pool: PoolConfig, provider: Provider) -> Listed:
    in_flight, read_at = cloner.hosts(pool.name), time.monotonic()
    facts = await ctx.runner.call(provider.list_vms, pool.name, pool.folder, timeout=_TIMEOUT)
    return Listed(facts, in_flight, read_at)


async def read_all(ctx: Context, cloner: Cloner,
                   pools: Iterable[tuple[PoolConfig, Provider]]) -> dict[str, Listed | BaseException]:
    """The inventory of each pool whose provider reads many at once (`Listing`), or what reading it raised
    (the pass fails that pool alone, as before). The other pools are not in the result: each reads its own
    within its pass, right before its Redis read, as it always has."""
    by_provider: dict[int, list[tuple[PoolConfig, Provider]]] = {}
    for pool, provider in pools:
        if isinstance(provider, Listing):
            by_provider.setdefault(id(provider), []).append((pool, provider))
    result: dict[str, Listed | BaseException] = {}

    async def batch(group: list[tuple[PoolConfig, Provider]]) -> None:
        provider = group[0][1]
        assert isinstance(provider, Listing)
        in_flight = {pool.name: cloner.hosts(pool.name) for pool, _ in group}
        read_at = time.monotonic()
        try:
            listed = await ctx.runner.call(provider.list_pools, {pool.name: pool.folder for pool, _ in group},
                                           timeout=_TIMEOUT)
        except Exception as err:
            result.update((pool.name, err) for pool, _ in group)
            return
        for pool, _ in group:
            facts = listed.get(pool.name, ProviderError(f"{pool.name}: not in the provider's inventory answer"))
            result[pool.name] = facts if isinstance(facts, BaseException) else Listed(facts, in_flight[pool.name],
                                                                                      read_at)

    await asyncio.gather(*(batch(group) for group in by_provider.values()))
    return result
