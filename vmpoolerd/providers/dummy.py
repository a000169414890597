"""The dummy provider: VMs that exist only in Redis, so the manager's whole lifecycle runs without a vCenter.

It is the embedded default. Its VMs live in Redis (one hash per folder,
`vmpooler__dummy__<provider>__<folder>`, VM name -> JSON record), so they survive a restart of the daemon
and every manager on that Redis sees the same ones, as they would see one vCenter.

Options, under `providers: <name>:` (all optional):

    clone_time            seconds a clone takes; the call blocks that long        default 1
    boot_time             seconds from the end of the clone until the guest        default 2
                          reports its hostname (what the hostname check waits for)
    destroy_time          seconds a destroy takes                                  default 0
    clone_fail_percent    share of clones that fail; a failed clone leaves no VM   default 0
    destroy_fail_percent  share of destroys that fail; the VM stays                default 0
    ready_fail_percent    share of VMs that never report a hostname (they time     default 0
                          out in pending)
    guest_ip              the guest IP every VM reports (for the tcp ready check)  default none
    ready_check           the ready check of pools that name none                  default hostname
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis

from vmpooler_core.config import PoolConfig, ProviderConfig
from vmpooler_core.keys import Keys
from vmpooler_core.provider import CloneSpec, ProviderError, ProviderUnavailable, ReadyCheck, VmFacts


def _seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    return default if value is None else float(value)


class DummyProvider:
    def __init__(self, config: ProviderConfig, client: redis.Redis, pools: Mapping[str, PoolConfig],
                 keys: Keys | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        options = config.options
        self.name = config.name
        self.ready_check: ReadyCheck = cast(ReadyCheck, options.get("ready_check") or "hostname")
        self.clone_time = _seconds(options, "clone_time", 1.0)
        self.boot_time = _seconds(options, "boot_time", 2.0)
        self.destroy_time = _seconds(options, "destroy_time", 0.0)
        self.clone_fail_percent = _seconds(options, "clone_fail_percent", 0.0)
        self.destroy_fail_percent = _seconds(options, "destroy_fail_percent", 0.0)
        self.ready_fail_percent = _seconds(options, "ready_fail_percent", 0.0)
        self.guest_ip: str | None = options.get("guest_ip")
        self.redis = client
        self.keys = keys or Keys()
        self.clock = clock
        self._folders = {name: pool.folder or name for name, pool in pools.items()}
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()  # the provider is called from several threads at once

    # Helpers -------------------------------------------------------------------------------------

    def _chance(self, percent: float) -> bool:
        with self._rng_lock:
            return percent > 0 and self._rng.uniform(0, 100) < percent

    def _key(self, pool: str, folder: str | None = None) -> str:
        return self.keys.dummy_folder(self.name, folder or self._folders.get(pool, pool))

    def _redis(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise ProviderUnavailable(f"dummy provider {self.name}: redis: {err}") from err

    def _load(self, pool: str, name: str) -> dict[str, Any] | None:
        raw = self._redis(lambda: self.redis.hget(self._key(pool), name))
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def _save(self, pool: str, name: str, record: Mapping[str, Any]) -> None:
        self._redis(lambda: self.redis.hset(self._key(pool), name, json.dumps(record)))

    def _facts(self, name: str, raw: str, now: float) -> VmFacts:
        try:
            record = json.loads(raw)
        except ValueError:
            return VmFacts(name, powered_on=False)
        on = bool(record.get("on"))
        booted = on and not record.get("broken") and now >= float(record.get("boots_at", 0))
        return VmFacts(name, powered_on=on, guest_hostname=name if booted else None,
                       guest_ip=self.guest_ip if booted else None, host=record.get("host"))

    # The Provider protocol -----------------------------------------------------------------------

    def list_vms(self, pool: str, folder: str | None) -> dict[str, VmFacts]:
        records: dict[str, str] = self._redis(lambda: self.redis.hgetall(self._key(pool, folder)))
        now = self.clock()
        return {name: self._facts(name, raw, now) for name, raw in records.items()}

    def clone(self, pool: str, spec: CloneSpec) -> None:
        time.sleep(self.clone_time)
        if self._chance(self.clone_fail_percent):
            raise ProviderError(f"dummy: injected failure cloning {spec.name}")
        now = self.clock()
        record = {"created": now, "boots_at": now + self.boot_time, "on": True, "template": spec.template,
                  "broken": self._chance(self.ready_fail_percent), "host": spec.target or "dummy-host",
                  "snapshots": {}, "disks": []}
        created = self._redis(lambda: self.redis.hsetnx(self._key(pool, spec.folder), spec.name,
                                                        json.dumps(record)))
        if not created:
            raise ProviderError(f"dummy: a VM named {spec.name} already exists")

    def destroy(self, pool: str, name: str) -> None:
        time.sleep(self.destroy_time)
        if self._chance(self.destroy_fail_percent):
            raise ProviderError(f"dummy: injected failure destroying {name}")
        self._redis(lambda: self.redis.hdel(self._key(pool), name))

    def snapshot(self, pool: str, name: str, snapshot: str) -> None:
        record = self._load(pool, name)
        if record is None:
            raise ProviderError(f"dummy: no VM {name}")
        record.setdefault("snapshots", {})[snapshot] = self.clock()
        self._save(pool, name, record)

    def revert(self, pool: str, name: str, snapshot: str) -> None:
        record = self._load(pool, name)
        if record is None or snapshot not in record.get("snapshots", {}):
            raise ProviderError(f"dummy: {name} has no snapshot {snapshot}")

    def add_disk(self, pool: str, name: str, size_gb: int, datastore: str | None) -> None:
        record = self._load(pool, name)
        if record is None:
            raise ProviderError(f"dummy: no VM {name}")
        record.setdefault("disks", []).append(size_gb)
        self._save(pool, name, record)

    def close(self) -> None:
        self.redis.close()
