"""The pools as the managers record them in Redis, in the original's shape: the `vmpooler__pools` set and
one `vmpooler__pool__<name>` hash each (its `alias` comma-joined). The original's API-only processes
read them when their configuration has no `pools:`; so do ours (contract B1, B5)."""

from __future__ import annotations

from collections.abc import Mapping

from redis import asyncio as aioredis

from .config import Config, PoolConfig
from .keys import Keys
from .pool_settings import template_of


def record(pool: PoolConfig) -> dict[str, str]:
    fields = {"name": pool.name, "size": pool.size, "template": template_of(pool), "alias": ",".join(pool.alias),
              "domain": pool.domain, "provider": pool.provider, "clone_target": pool.clone_target,
              "dns_plugin": pool.dns_plugin, "folder": pool.folder, "datastore": pool.datastore,
              "timeout": pool.timeout, "ready_ttl": pool.ready_ttl}
    return {key: str(value) for key, value in fields.items() if value is not None and value != ""}


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def pool_of(name: str, fields: Mapping[str, str]) -> PoolConfig:
    """A pool from its record; a pool in the set without one (the original could leave such) has size 0."""
    return PoolConfig(name=name, size=_int(fields.get("size")) or 0,
                      alias=tuple(a for a in fields.get("alias", "").split(",") if a and a != name),
                      template=fields.get("template"), folder=fields.get("folder"),
                      datastore=fields.get("datastore"), clone_target=fields.get("clone_target"),
                      timeout=_int(fields.get("timeout")), ready_ttl=_int(fields.get("ready_ttl")),
                      provider=fields.get("provider", ""), dns_plugin=fields.get("dns_plugin"),
                      domain=fields.get("domain"))


async def read(client: aioredis.Redis, keys: Keys | None = None) -> tuple[PoolConfig, ...]:
    """The recorded pools, by name; one round trip for the names, one for the records."""
    keys = keys or Keys()
    names = sorted(str(name) for name in await client.smembers(keys.pools()))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.pool_record(name))
    return tuple(pool_of(name, fields) for name, fields in zip(names, await pipe.execute(), strict=True))


async def with_recorded_pools(config: Config, client: aioredis.Redis) -> Config:
    return config.with_pools(await read(client))
