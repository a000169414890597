"""The LDAP directory's health as the logins saw it: each host ok, or failing since when and why.

Written by every login that asked the directory (login_throttle.py, lua/login_outcome.lua), so every API
process's view is shared. The directory is only asked when someone logs in: what a login saw is reported
for HEALTH_SECONDS after it, then the host is "unknown" again, rather than an outage being reported for
ever after the directory came back while nobody logged in.

Read by /healthcheck and `vmpoolerd --check` (health.py: a failing host makes the pooler unhealthy, as a
degraded provider does) and by /status (status.py), in their `directory` block.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from .config import Config
from .inventory import Inventory
from .login_throttle import HEALTH_SECONDS
from .provider_health import iso


@dataclass(frozen=True, slots=True)
class HostHealth:
    host: str
    ok: bool
    at: float  # epoch seconds of the login that saw it
    since: float | None = None  # first failure of the current run of failures
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": self.ok, "seen": iso(self.at)}
        if not self.ok:
            doc.update({"reason": self.reason, "since": iso(self.since or self.at)})
        return doc

    def describe(self) -> str:
        return f"directory {self.host} cannot be asked since {iso(self.since or self.at)}: {self.reason}"


def decode(host: str, raw: str) -> HostHealth | None:
    try:
        data = json.loads(raw)
        return HostHealth(host, bool(data["ok"]), float(data["at"]),
                          float(data["since"]) if data.get("since") is not None else None, str(data.get("reason", "")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


async def read(config: Config, inventory: Inventory, now: float | None = None) -> dict[str, HostHealth]:
    """The hosts seen within HEALTH_SECONDS; none at all without an LDAP directory configured."""
    if config.auth is None or config.auth.ldap is None:
        return {}
    now = time.time() if now is None else now
    raw = cast(dict[str, str], await inventory.redis.hgetall(inventory.keys.directory_health()))
    found = (decode(host, value) for host, value in sorted(raw.items()))
    return {health.host: health for health in found if health is not None and now - health.at <= HEALTH_SECONDS}


def block(hosts: Mapping[str, HostHealth]) -> dict[str, Any] | None:
    """The `directory` block of /status and /healthcheck: None until a login has seen a host."""
    if not hosts:
        return None
    ok = all(health.ok for health in hosts.values())
    return {"ok": ok, "state": "ok" if ok else "unavailable" if not any(h.ok for h in hosts.values()) else "degraded",
            "hosts": {host: health.as_json() for host, health in hosts.items()}}


def reasons(hosts: Mapping[str, HostHealth]) -> list[str]:
    return [health.describe() for health in hosts.values() if not health.ok]
