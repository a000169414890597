"""The VM inventory in Redis: every state transition, each one atomic and one round trip.

States per pool (sets): pending -> ready -> running -> completed -> (destroyed), plus discovered for
VMs found in a pool folder that Redis did not know. A VM is in at most one set of its pool at any
moment; the Lua scripts in ./lua guarantee it across any number of API and manager processes.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from redis import asyncio as aioredis

from . import clock, scripts
from .keys import STATES, Keys

CheckoutEntry = tuple[str, int, Sequence[str]]  # requested name, count, candidate pools

_TOKEN_FIRST = string.ascii_lowercase[:25]  # a-y, as the original's tokens
_TOKEN_REST = string.ascii_lowercase + string.digits


def new_token() -> str:
    return secrets.choice(_TOKEN_FIRST) + "".join(secrets.choice(_TOKEN_REST) for _ in range(31))


class Inventory:
    def __init__(self, client: aioredis.Redis, keys: Keys | None = None, data_ttl_hours: int = 168) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.data_ttl = data_ttl_hours * 3600
        self._scripts = scripts.register(client)

    async def _run(self, name: str, *args: str | int | float) -> Any:
        return await self._scripts[name](args=[self.keys.prefix, *args])

    # Transitions ---------------------------------------------------------------------------------

    async def checkout(self, entries: Sequence[CheckoutEntry], *, token: str = "",
                       lifetime: int | None = None, now: str | None = None) -> list[str]:
        """Raw result of checkout.lua: ["ok", req, pool, host, ...] | ["empty", name] | ["unauthorized"]."""
        hours = "" if lifetime is None else lifetime
        args: list[str | int | float] = [now or clock.stamp(), token, hours, len(entries)]
        for requested, count, candidates in entries:
            args += [requested, count, len(candidates), *candidates]
        return list(await self._run("checkout", *args))

    async def return_vm(self, host: str, token: str = "") -> list[str]:
        """Raw result of return.lua: ["ok", pool] | ["notfound"] | ["unauthorized", pool] | ["notrunning", pool]."""
        return list(await self._run("return", host, token))

    async def move(self, pool: str, host: str, source: str, target: str,
                   fields: Mapping[str, object] | None = None) -> bool:
        flat: list[str | int | float] = []
        for field, value in (fields or {}).items():
            flat += [field, str(value)]
        return bool(await self._run("move", pool, host, source, target, *flat))

    async def add_pending(self, pool: str, host: str, template: str, now: str | None = None) -> bool:
        return bool(await self._run("add_pending", pool, host, now or clock.stamp(), template))

    async def forget(self, pool: str, host: str, *, destroyed: bool) -> int:
        stamp = clock.stamp() if destroyed else ""
        return int(await self._run("forget", pool, host, stamp, self.data_ttl))

    async def discover(self, pool: str, hosts: Iterable[str]) -> list[str]:
        hosts = list(hosts)
        if not hosts:
            return []
        return list(await self._run("discover", pool, *hosts))

    # Reads ---------------------------------------------------------------------------------------

    async def members(self, state: str, pool: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(self.keys.state(state, pool)))

    async def snapshot(self, pool: str) -> dict[str, set[str]]:
        """Every state set of one pool, in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        for state in STATES:
            pipe.smembers(self.keys.state(state, pool))
        results = await pipe.execute()
        return {state: set(members) for state, members in zip(STATES, results, strict=True)}

    async def counts(self, pools: Sequence[str]) -> dict[str, dict[str, int]]:
        """SCARD of every state of every pool, one pipelined round trip: O(pools), not O(VMs)."""
        pipe = self.redis.pipeline(transaction=False)
        for pool in pools:
            for state in STATES:
                pipe.scard(self.keys.state(state, pool))
        flat = await pipe.execute()
        width = len(STATES)
        return {pool: dict(zip(STATES, flat[i * width:(i + 1) * width], strict=True))
                for i, pool in enumerate(pools)}

    async def vm(self, host: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.vm(host)))

    async def vms(self, hosts: Sequence[str], fields: Sequence[str]) -> dict[str, list[str | None]]:
        """Chosen fields of many VM hashes in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.hmget(self.keys.vm(host), list(fields))
        return dict(zip(hosts, await pipe.execute(), strict=True))

    async def active_since(self, pool: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.active(pool)))

    async def clone_count(self) -> int:
        return int(await self.redis.get(self.keys.clone_tasks()) or 0)

    # VM attributes -------------------------------------------------------------------------------

    async def set_fields(self, host: str, fields: Mapping[str, object]) -> None:
        if fields:
            await self.redis.hset(self.keys.vm(host), mapping={k: str(v) for k, v in fields.items()})

    async def add_tags(self, host: str, tags: Mapping[str, str], date: str | None = None) -> None:
        """Tags go on the VM and into the day's tag statistics, atomically."""
        day = date or clock.today()
        pipe = self.redis.pipeline(transaction=True)
        for tag, value in tags.items():
            pipe.hset(self.keys.vm(host), f"tag:{tag}", value)
            pipe.hset(self.keys.tag_stats(day), f"{host}:{tag}", value)
        await pipe.execute()

    async def queue_task(self, queue_key: str, host: str, argument: str) -> None:
        await self.redis.sadd(queue_key, f"{host}:{argument}")

    async def record_stat(self, key: str, field: str, seconds: float) -> None:
        await self.redis.hset(key, field, f"{seconds:.2f}")

    # Tokens --------------------------------------------------------------------------------------

    async def create_token(self, user: str) -> str:
        token = new_token()
        await self.redis.hset(self.keys.token(token),
                              mapping={"user": user, "created": clock.stamp()})
        return token

    async def token(self, token: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.token(token)))

    async def tokens(self) -> dict[str, dict[str, str]]:
        """Every token with its fields; SCAN, never KEYS, so a big Redis is not blocked."""
        names = [key async for key in self.redis.scan_iter(match=self.keys.token_pattern(), count=1000)]
        pipe = self.redis.pipeline(transaction=False)
        for key in names:
            pipe.hgetall(key)
        start = len(self.keys.token(""))
        return {key[start:]: dict(data) for key, data in zip(names, await pipe.execute(), strict=True) if data}

    async def delete_token(self, token: str) -> bool:
        return bool(await self.redis.delete(self.keys.token(token)))

    async def status_figures(self, pools: Sequence[str], date: str) -> list[str]:
        """Raw result of status.lua (see the script's header for the layout)."""
        return list(await self._run("status", date, *pools))
