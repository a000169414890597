"""Each provider's health as the managers see it: ok, or degraded with the reason and since when.

A manager publishes its view of every provider whose pools it works (vmpoolerd/manager/health_report.py)
into one hash per provider (`Keys.provider_health`), one field per manager: a JSON report stamped with the
time it was written and refreshed well within `manager_lease_seconds`. A report older than that is
ignored, as a heartbeat is (health.py): its manager has died or lost Redis, and its view is no longer news.

A problem is the provider's (it cannot log in, or cannot be reached: none of its pools can be worked) or
one pool's (its clones keep failing, or its folder cannot be read). The views of several managers are
merged: a problem any of them sees counts, with the earliest `since`.

Read by /healthcheck and `vmpoolerd --check` (health.py), and by /status (status.py), whose `providers`
block and per-pool `reason` are what `vmpooler status` and `vmpooler pools` show.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .inventory import Inventory

LOGIN, UNREACHABLE, CLONE, INVENTORY = "login", "unreachable", "clone", "inventory"
# The manager holds back: VMs that vanished from a pool at once are not forgotten, ready VMs that all
# failed their check at once are not destroyed (vmpoolerd/manager/reconcile.py, lifecycle.py).
VANISHED, UNREADY = "vanished", "unready"
# Each kind of problem as it reads in "provider <name> <this> since <when>: <the last error>".
SUMMARY: Mapping[str, str] = {
    LOGIN: "cannot log in",
    UNREACHABLE: "is unreachable",
    CLONE: "fails to clone",
    INVENTORY: "cannot list its VMs",
    VANISHED: "lost sight of VMs",
    UNREADY: "has VMs failing their ready check",
}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # one of SUMMARY's keys
    detail: str  # the last error (never a password: the manager scrubs it before publishing)
    since: float  # epoch seconds of the first failure of this run of failures

    @property
    def summary(self) -> str:
        return SUMMARY.get(self.kind, self.kind)

    def describe(self, provider: str, pool: str | None = None) -> str:
        where = f" for pool {pool}" if pool else ""
        return f"provider {provider} {self.summary}{where} since {iso(self.since)}: {self.detail}"

    def as_json(self) -> dict[str, str]:
        return {"problem": self.kind, "reason": f"{self.summary}: {self.detail}", "since": iso(self.since)}

    def stored(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "since": self.since}

    @classmethod
    def from_stored(cls, data: Any) -> Problem | None:
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(str(data["kind"]), str(data["detail"]), float(data["since"]))
        except (KeyError, TypeError, ValueError):
            return None


def earlier(first: Problem | None, second: Problem | None) -> Problem | None:
    """The one of two problems that started first (a problem beats none)."""
    if first is None or (second is not None and second.since < first.since):
        return second
    return first


@dataclass(frozen=True, slots=True)
class Report:
    """One manager's view of one provider, as stored in Redis."""

    at: float  # epoch seconds it was written
    problem: Problem | None = None
    pools: Mapping[str, Problem] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({"at": self.at, "problem": self.problem.stored() if self.problem else None,
                           "pools": {pool: problem.stored() for pool, problem in sorted(self.pools.items())}})

    @classmethod
    def decode(cls, raw: str) -> Report | None:
        """The report, or None for anything else (a field written by a newer or broken writer)."""
        try:
            data = json.loads(raw)
            at = float(data["at"])
            pools = data.get("pools") or {}
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        found = {str(pool): Problem.from_stored(value) for pool, value in
                 (pools.items() if isinstance(pools, Mapping) else ())}
        return cls(at, Problem.from_stored(data.get("problem")),
                   {pool: problem for pool, problem in found.items() if problem is not None})


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A provider's health merged over the fresh reports; `known` is False when there is none."""

    name: str
    known: bool = False
    problem: Problem | None = None
    pools: Mapping[str, Problem] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return self.problem is not None or bool(self.pools)

    @property
    def state(self) -> str:
        return "degraded" if self.degraded else "ok" if self.known else "unknown"

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": not self.degraded, "state": self.state}
        if self.problem is not None:
            doc.update(self.problem.as_json())
        if self.pools:
            doc["pools"] = {pool: problem.as_json() for pool, problem in sorted(self.pools.items())}
        return doc

    def reasons(self) -> list[str]:
        found = [self.problem.describe(self.name)] if self.problem is not None else []
        return found + [problem.describe(self.name, pool) for pool, problem in sorted(self.pools.items())]

    def why_short(self, pool: str) -> str | None:
        """Why `pool` (one of this provider's) cannot be filled, if this provider's health says why."""
        problem = self.problem or self.pools.get(pool)
        return None if problem is None else problem.describe(self.name)


def merge(name: str, reports: Iterable[Report]) -> ProviderHealth:
    known = False
    problem: Problem | None = None
    pools: dict[str, Problem] = {}
    for report in reports:
        known = True
        problem = earlier(problem, report.problem)
        for pool, found in report.pools.items():
            pools[pool] = earlier(pools.get(pool), found) or found
    return ProviderHealth(name, known, problem, pools)


async def read(config: Config, inventory: Inventory, now: float | None = None) -> dict[str, ProviderHealth]:
    """Every configured provider's health from the reports written within `manager_lease_seconds`, in
    one round trip."""
    now = time.time() if now is None else now
    names = list(config.providers)
    pipe = inventory.redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(inventory.keys.provider_health(name))
    replies: list[dict[str, str]] = await pipe.execute()
    fresh_within = float(config.app.manager_lease_seconds)
    found: dict[str, ProviderHealth] = {}
    for name, raw in zip(names, replies, strict=True):
        reports = (Report.decode(value) for value in raw.values())
        found[name] = merge(name, (r for r in reports if r is not None and now - r.at <= fresh_within))
    return found


def block(health: Mapping[str, ProviderHealth]) -> dict[str, Any] | None:
    """The `providers` block of /status and /healthcheck: None until a manager has reported on one."""
    if not any(provider.known for provider in health.values()):
        return None
    return {name: provider.as_json() for name, provider in health.items()}
