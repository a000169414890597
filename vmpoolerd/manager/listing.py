"""The inventories a pass starts from: read for all the pools of a provider at once when it can (vSphere: one
property query for every folder, so a pass costs one call whether it covers 1 pool or 100), else pool by
pool, concurrently (the dummy provider).

What each pool's clones in flight were is taken before the read, as a pool's own read does: a clone that
ends between the two is still covered (pool_worker.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vmpooler_core.config import PoolConfig
from vmpooler_core.provider import Listing, Provider, VmFacts

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
    """Each pool's inventory, or what reading it raised (the pass fails that pool alone, as before)."""
    by_provider: dict[int, list[tuple[PoolConfig, Provider]]] = {}
    for pool, provider in pools:
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
            facts = listed[pool.name]
            result[pool.name] = facts if isinstance(facts, BaseException) else Listed(facts, in_flight[pool.name],
                                                                                      read_at)

    async def one(pool: PoolConfig, provider: Provider) -> None:
        try:
            result[pool.name] = await read_one(ctx, cloner, pool, provider)
        except Exception as err:
            result[pool.name] = err

    reads = []
    for group in by_provider.values():
        if isinstance(group[0][1], Listing):
            reads.append(batch(group))
        else:
            reads.extend(one(pool, provider) for pool, provider in group)
    await asyncio.gather(*reads)
    return result
