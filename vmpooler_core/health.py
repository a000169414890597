"""Is this pooler healthy? Redis answers and does what the pooler asks of it, a manager has beaten its
heart recently, no provider is degraded (cannot log in, unreachable, clones failing: provider_health.py),
and no LDAP host failed the last login that asked it (directory_health.py).

Used by the API's `/healthcheck` and by `vmpoolerd --check` (whose exit code a probe can use), so both
give the same verdict.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from redis.exceptions import RedisError

from . import directory_health, provider_health, redis_faults
from .config import Config
from .inventory import Inventory

HEALTH_TTL_MS = 60_000


async def _probe(inventory: Inventory, now: float) -> list[tuple[str, float]]:
    """The managers' heartbeats, read the way the pooler works: a read (a replica cut off from its
    primary refuses it: MASTERDOWN), then a write as every write is made, a fenced script (a replica, too
    few replicas, a full memory or a fenced former primary refuse it: READONLY, NOREPLICAS, OOM, FENCED;
    an ACL user without scripting or without the keys' pattern too)."""
    beats = cast(list[tuple[str, float]], await inventory.redis.zrevrange(inventory.keys.heartbeats(), 0, -1,
                                                                           withscores=True))
    await inventory.write(("SET", inventory.keys.health(), str(now), "PX", str(HEALTH_TTL_MS)))
    return list(beats)


async def check(config: Config, inventory: Inventory, now: float | None = None) -> dict[str, Any]:
    """`{"ok": bool, "redis": bool, "managers": int, "heartbeat_age": seconds | None, "reason": str}`,
    plus `providers` once a manager has reported on them (see `with_providers`). A heartbeat older than
    the lease length means no manager is keeping the pools filled. When Redis fails, `reason` says why and
    names the setting to fix (redis_faults.py)."""
    now = time.time() if now is None else now
    try:
        beats = await _probe(inventory, now)
    except (RedisError, OSError) as err:
        fault = redis_faults.explain(err, config.redis)
        if fault is None or fault.kind == "unreachable":
            reason = f"redis unreachable: {type(err).__name__}"
        else:
            reason = fault.reason
        return {"ok": False, "redis": False, "managers": 0, "heartbeat_age": None, "reason": reason}
    fresh_within = float(config.app.manager_lease_seconds)
    live = [score for _, score in beats if now - score <= fresh_within]
    age = round(now - beats[0][1], 1) if beats else None
    if not live:
        reason = "no manager heartbeat" if age is None else f"last manager heartbeat {age}s ago"
        return {"ok": False, "redis": True, "managers": 0, "heartbeat_age": age, "reason": reason}
    verdict = {"ok": True, "redis": True, "managers": len(live), "heartbeat_age": age, "reason": "healthy"}
    verdict = await with_providers(config, inventory, now, verdict)
    try:
        hosts = await directory_health.read(config, inventory, now)
    except (RedisError, OSError) as err:
        return _unreachable(err)
    return with_directory(verdict, hosts)


def _unreachable(err: Exception) -> dict[str, Any]:
    return {"ok": False, "redis": False, "managers": 0, "heartbeat_age": None,
            "reason": f"redis unreachable: {type(err).__name__}"}


async def with_providers(config: Config, inventory: Inventory, now: float,
                         verdict: dict[str, Any]) -> dict[str, Any]:
    """`verdict` with the providers' health: a `providers` block once a manager has reported, and
    unhealthy, every degraded provider's reason and since when, when one is."""
    try:
        health = await provider_health.read(config, inventory, now)
    except (RedisError, OSError) as err:
        return _unreachable(err)
    block = provider_health.block(health)
    if block is None:
        return verdict
    reasons = [reason for provider in health.values() for reason in provider.reasons()]
    if reasons:
        verdict = {**verdict, "ok": False, "reason": "; ".join(reasons)}
    return {**verdict, "providers": block}


def with_directory(verdict: dict[str, Any], hosts: Mapping[str, directory_health.HostHealth]) -> dict[str, Any]:
    """`verdict` with the LDAP directory's hosts as the logins last saw them (a `directory` block once a
    login has asked one), and unhealthy, with each failing host's reason, when one is failing."""
    found = directory_health.block(hosts)
    if found is None:
        return verdict
    failing = directory_health.reasons(hosts)
    if failing:
        before = [] if verdict["ok"] else [verdict["reason"]]
        verdict = {**verdict, "ok": False, "reason": "; ".join(before + failing)}
    return {**verdict, "directory": found}
