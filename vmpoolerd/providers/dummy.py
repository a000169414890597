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

import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis

from vmpooler_core.blocking_writes import BlockingWrites
from vmpooler_core.config import PoolConfig, ProviderConfig
from vmpooler_core.keys import Keys
from vmpooler_core.provider import CloneSpec, ProviderError, ProviderUnavailable, ReadyCheck, VmFacts


def _seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    return default if value is None else float(value)


@dataclasses.dataclass(slots=True)
class DummyVm:
    """One VM, as its folder's hash keeps it (JSON). Fields missing from a record take these defaults."""

    created: float = 0.0
    boots_at: float = 0.0  # when the guest starts reporting its hostname
    on: bool = False
    template: str = ""
    broken: bool = False  # never reports a hostname (ready_fail_percent)
    host: str | None = None
    snapshots: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> taken at
    disks: list[int] = dataclasses.field(default_factory=list)  # sizes in GB, in the order added
    pooler_id: str | None = None  # the mark of the pooler that cloned it (vSphere keeps it in the annotation)

    @classmethod
    def from_json(cls, raw: str) -> DummyVm | None:
        """The record, or None when `raw` is not one (a hash field written by something else)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                return None
            host, mark = data.get("host"), data.get("pooler_id")
            return cls(created=float(data.get("created", 0)), boots_at=float(data.get("boots_at", 0)),
                       on=bool(data.get("on")), template=str(data.get("template", "")),
                       broken=bool(data.get("broken")), host=None if host is None else str(host),
                       snapshots={str(k): float(v) for k, v in (data.get("snapshots") or {}).items()},
                       disks=[int(size) for size in data.get("disks") or []],
                       pooler_id=mark if isinstance(mark, str) and mark else None)
        except (ValueError, TypeError, AttributeError):
            return None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


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
        self._write = BlockingWrites(client, self.keys)  # its writes behind the fence, see blocking_writes.py
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

    def _load(self, pool: str, name: str) -> DummyVm:
        raw = self._redis(lambda: self.redis.hget(self._key(pool), name))
        record = None if raw is None else DummyVm.from_json(raw)
        if record is None:
            raise ProviderError(f"dummy: no VM {name}")
        return record

    def _save(self, pool: str, name: str, record: DummyVm) -> None:
        self._redis(lambda: self._write(("HSET", self._key(pool), name, record.to_json())))

    def _facts(self, name: str, raw: str, now: float) -> VmFacts:
        record = DummyVm.from_json(raw)
        if record is None:
            return VmFacts(name, powered_on=False)
        booted = record.on and not record.broken and now >= record.boots_at
        return VmFacts(name, powered_on=record.on, guest_hostname=name if booted else None,
                       guest_ip=self.guest_ip if booted else None, host=record.host, pooler_id=record.pooler_id)

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
        record = DummyVm(created=now, boots_at=now + self.boot_time, on=True, template=spec.template,
                         broken=self._chance(self.ready_fail_percent), host=spec.target or "dummy-host",
                         pooler_id=spec.pooler_id)
        created, = self._redis(lambda: self._write(("HSETNX", self._key(pool, spec.folder), spec.name,
                                                    record.to_json())))
        if not created:
            raise ProviderError(f"dummy: a VM named {spec.name} already exists")

    def destroy(self, pool: str, name: str) -> None:
        time.sleep(self.destroy_time)
        if self._chance(self.destroy_fail_percent):
            raise ProviderError(f"dummy: injected failure destroying {name}")
        self._redis(lambda: self._write(("HDEL", self._key(pool), name)))

    def snapshot(self, pool: str, name: str, snapshot: str) -> None:
        record = self._load(pool, name)
        record.snapshots[snapshot] = self.clock()
        self._save(pool, name, record)

    def revert(self, pool: str, name: str, snapshot: str) -> None:
        if snapshot not in self._load(pool, name).snapshots:
            raise ProviderError(f"dummy: {name} has no snapshot {snapshot}")

    def add_disk(self, pool: str, name: str, size_gb: int, datastore: str | None) -> None:
        record = self._load(pool, name)
        record.disks.append(size_gb)
        self._save(pool, name, record)

    def close(self) -> None:
        self.redis.close()
