"""Pool settings changed at run time: the pool configuration API of API v3 (contract B2.10).

A pool's size, template and clone target set through the API win over the configuration file and are
kept across restarts, in the original's Redis keys (`vmpooler__config__poolsize`, `__template`,
`__clone_target`), so today's original reads ours and we read its. Deleting an override goes back to the
file's value (and adds the pool to the original's `vmpooler__pool__undo_*_override` set); a reset
(`vmpooler__poolreset`) asks the manager to replace the pool's ready and pending VMs. The manager picks
every change up at its next pass (vmpoolerd/manager/pool_settings.py).

Changes name real pools only: the original accepted alias names here and then failed with a 500 (B7.21).
Each change is one fenced write (lua/write.lua) and one line in the audit log.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import audit
from .audit import ANONYMOUS, Caller
from .config import Config, PoolConfig
from .errors import InvalidRequest, NotFound
from .inventory import Inventory
from .request import whole_number

SIZE, TEMPLATE, CLONE_TARGET = "poolsize", "template", "clone_target"
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


class BadPools(InvalidRequest):
    """A change names pools that do not exist or gives them a bad value; nothing was changed. `field` is
    the original's body key listing them (`not_configured`, `bad_templates` or `bad_pools`)."""

    def __init__(self, message: str, field: str, names: list[str]) -> None:
        self.field = field
        self.names = names
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Pool -> value, for the pools that have one."""

    size: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    template: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    clone_target: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def apply(self, pool: PoolConfig) -> PoolConfig:
        """The pool as the manager runs it."""
        return dataclasses.replace(pool, size=self.size.get(pool.name, pool.size),
                                   template=self.template.get(pool.name, pool.template),
                                   clone_target=self.clone_target.get(pool.name, pool.clone_target))


def template_of(pool: PoolConfig) -> str:
    """What the pool's VMs are cloned from (a pool without `template` clones the template of its name)."""
    return pool.template or pool.name


def parse(raw: list[dict[str, str]]) -> Overrides:
    """Overrides from the three hashes as read (size, template, clone target); a size that is not a
    whole number (written by hand) is ignored."""
    sizes, templates, targets = raw
    return Overrides(MappingProxyType({p: int(v) for p, v in sizes.items() if str(v).isdigit()}),
                     MappingProxyType(dict(templates)), MappingProxyType(dict(targets)))


def size_from(pool: PoolConfig, stored: str | None) -> int:
    """The pool's size as the manager keeps it: the one set through the API (`stored`, as read from
    `vmpooler__config__poolsize`) when there is one, else the file's."""
    return int(stored) if stored is not None and str(stored).isdigit() else pool.size


async def sizes(inventory: Inventory, pools: tuple[PoolConfig, ...]) -> dict[str, int]:
    """Each pool's size as the manager keeps it; one round trip."""
    if not pools:
        return {}
    stored = await inventory.redis.hmget(inventory.keys.pool_settings(SIZE), [pool.name for pool in pools])
    return {pool.name: size_from(pool, None if value is None else str(value))
            for pool, value in zip(pools, stored, strict=True)}


async def read(inventory: Inventory) -> Overrides:
    pipe = inventory.redis.pipeline(transaction=False)
    for setting in (SIZE, TEMPLATE, CLONE_TARGET):
        pipe.hgetall(inventory.keys.pool_settings(setting))
    return parse(list(await pipe.execute()))


def _body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object of pool names to values")
    return body


def _size(value: Any) -> int | None:
    try:
        return whole_number("size", value, 0)
    except InvalidRequest:
        return None


def _template(value: Any) -> str | None:
    # A path in vSphere's inventory: a folder and a name, neither end a `/`.
    ok = isinstance(value, str) and _PRINTABLE.fullmatch(value) and "/" in value.strip("/") \
        and not value.startswith("/") and not value.endswith("/")
    return value if ok else None


def _clone_target(value: Any) -> str | None:
    return value if isinstance(value, str) and _PRINTABLE.fullmatch(value) else None


class PoolSettings:
    """The API's side: read, change and reset the pools' run-time settings."""

    def __init__(self, config: Config, inventory: Inventory) -> None:
        self.config = config
        self.inventory = inventory

    def _checked(self, body: Any, value: Callable[[Any], Any], field: str, what: str) -> dict[str, Any]:
        wanted = _body(body)
        bad = [str(name)[:100] for name, raw in wanted.items()
               if name not in self.config.pool_index or value(raw) is None]
        if bad:
            raise BadPools(f"unknown pools or bad {what}: {', '.join(bad)}", field, bad)
        return {name: value(raw) for name, raw in wanted.items()}

    async def _set(self, setting: str, wanted: Mapping[str, Any], current: Mapping[str, Any], caller: Caller) -> bool:
        """Write the values that differ from the current ones; True when there was any."""
        changed = {pool: value for pool, value in wanted.items() if current[pool] != value}
        if changed:
            flat = [str(item) for pair in changed.items() for item in pair]
            await self.inventory.write(("HSET", self.inventory.keys.pool_settings(setting), *flat))
            for pool, value in changed.items():
                audit.record(f"pool-{setting}", caller, pool=pool, value=value)
        return bool(changed)

    async def _effective(self) -> dict[str, PoolConfig]:
        overrides = await read(self.inventory)
        return {pool.name: overrides.apply(pool) for pool in self.config.pools}

    async def set_sizes(self, body: Any, caller: Caller = ANONYMOUS) -> bool:
        """`{"pool": "<size>"}`; True when a size changed (the original's 201), False when none did (200)."""
        wanted = self._checked(body, _size, "not_configured", "sizes")
        now = await self._effective()
        return await self._set(SIZE, wanted, {p: now[p].size for p in wanted}, caller)

    async def set_templates(self, body: Any, caller: Caller = ANONYMOUS) -> bool:
        """`{"pool": "folder/template"}`; as `set_sizes`."""
        wanted = self._checked(body, _template, "bad_templates", "templates (expected folder/name)")
        now = await self._effective()
        return await self._set(TEMPLATE, wanted, {p: template_of(now[p]) for p in wanted}, caller)

    async def set_clone_targets(self, body: Any, caller: Caller = ANONYMOUS) -> bool:
        """`{"pool": "<cluster>"}`; as `set_sizes`."""
        wanted = self._checked(body, _clone_target, "bad_templates", "clone targets")
        now = await self._effective()
        return await self._set(CLONE_TARGET, wanted, {p: now[p].clone_target for p in wanted}, caller)

    def _pool(self, name: str) -> PoolConfig:
        if name not in self.config.pool_index:
            raise NotFound(f"no pool named {name[:100]!r}")
        return self.config.pool(name)

    async def _reset(self, setting: str, undo: str, name: str, now: object, before: object,
                     caller: Caller) -> bool:
        """Delete the pool's override (and tell the original's manager, which reads the undo set);
        True when that changes its value."""
        keys = self.inventory.keys
        await self.inventory.write(("HDEL", keys.pool_settings(setting), name),
                                   ("SADD", keys.undo_override(undo), name))
        if now != before:
            audit.record(f"pool-{setting}", caller, pool=name, value=before)
        return now != before

    async def reset_size(self, name: str, caller: Caller = ANONYMOUS) -> tuple[bool, dict[str, int]]:
        """Back to the file's size: (whether it changed, the original's body fields)."""
        pool = self._pool(name)
        now = (await self._effective())[name].size
        fields = {"pool_size_before_reset": now, "pool_size_before_overrides": pool.size}
        return await self._reset(SIZE, "size", name, now, pool.size, caller), fields

    async def reset_template(self, name: str, caller: Caller = ANONYMOUS) -> tuple[bool, dict[str, str]]:
        """Back to the file's template: (whether it changed, the original's body fields)."""
        pool = self._pool(name)
        now = template_of((await self._effective())[name])
        fields = {"template_before_reset": now, "template_before_overrides": template_of(pool)}
        return await self._reset(TEMPLATE, "template", name, now, template_of(pool), caller), fields

    async def reset_pools(self, body: Any, caller: Caller = ANONYMOUS) -> None:
        """`{"pool": <anything>}`: replace the ready and pending VMs of each pool named."""
        pools = list(self._checked(body, lambda _value: True, "bad_pools", "pools"))
        if pools:
            await self.inventory.write(("SADD", self.inventory.keys.pool_reset(), *pools))
        for pool in pools:
            audit.record("pool-reset", caller, pool=pool)

    async def documents(self) -> list[dict[str, Any]]:
        """Each pool's settings as the manager runs them, in the original's keys, with `template_ready`:
        whether the pool's VMs are being made from its template now (the manager has taken it up)."""
        keys = self.inventory.keys
        pipe = self.inventory.redis.pipeline(transaction=False)
        for setting in (SIZE, TEMPLATE, CLONE_TARGET):
            pipe.hgetall(keys.pool_settings(setting))
        pipe.hgetall(keys.prepared("template"))
        *raw, prepared = await pipe.execute()
        overrides = parse(raw)
        found: list[dict[str, Any]] = []
        for base in self.config.pools:
            pool = overrides.apply(base)
            doc: dict[str, Any] = {"name": pool.name, "template": template_of(pool), "size": pool.size}
            for key, value in (("alias", list(pool.alias)), ("folder", pool.folder), ("datastore", pool.datastore),
                               ("clone_target", pool.clone_target), ("provider", pool.provider),
                               ("dns_plugin", pool.dns_plugin), ("domain", pool.domain), ("timeout", pool.timeout),
                               ("ready_ttl", pool.ready_ttl)):
                if value:
                    doc[key] = value
            doc["template_ready"] = prepared.get(pool.name) == template_of(pool)
            found.append(doc)
        return found
