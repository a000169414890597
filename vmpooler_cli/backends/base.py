"""What every backend offers, and the plain results it returns.

Both backends return the same types built by the same helpers here, so a command cannot tell (and its
output does not show) whether it talked to an API server or to Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PoolRow:
    """One line of `vmpooler pools`. None means "this server does not say" (an old API)."""

    name: str
    aliases: tuple[str, ...] = ()
    ready: int | None = None
    pending: int | None = None
    running: int | None = None
    size: int | None = None
    reason: str | None = None  # why it is short of ready VMs, when its provider is degraded
    target: int | None = None  # sized to demand: the size the manager keeps it at now
    target_why: str | None = None  # and why

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "aliases": list(self.aliases), "ready": self.ready,
                               "pending": self.pending, "running": self.running, "size": self.size}
        if self.reason is not None:
            doc["reason"] = self.reason
        if self.target is not None:
            doc["target"] = {"size": self.target, "why": self.target_why or ""}
        return doc


@dataclass(frozen=True, slots=True)
class Allocated:
    """Checked-out VMs as (pool, hostname) pairs, grouped by pool in the order the pools were asked for.

    `hostname` is the short name. Its FQDN is `fqdns[hostname]` when the server named each VM's domain
    (API v2 and later: pools may have different domains), else `<hostname>.<domain>` when there is a
    domain; `domain` is the one domain of every VM, when they share one."""

    vms: tuple[tuple[str, str], ...]
    domain: str | None = None
    fqdns: Mapping[str, str] = field(default_factory=dict)

    def fqdn(self, host: str) -> str:
        if host in self.fqdns:
            return self.fqdns[host]
        return f"{host}.{self.domain}" if self.domain and "." not in host else host


def _aliases(value: Any) -> tuple[str, ...]:
    # The original configures `alias` as a string or a list, and echoes it as written.
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(a) for a in value)
    return ()


def as_int(value: Any) -> int | None:
    """A figure from a JSON answer as an int; None when the server sent none or nonsense."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def rows_from_status(pools: Mapping[str, Any]) -> list[PoolRow]:
    """PoolRows from the `/status` document's `pools` block, in its order."""
    rows = []
    for name, entry in pools.items():
        entry = entry if isinstance(entry, Mapping) else {}
        reason = entry.get("reason")
        found = entry.get("target")
        target: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        why = target.get("why")
        rows.append(PoolRow(str(name), _aliases(entry.get("alias")), as_int(entry.get("ready")),
                            as_int(entry.get("pending")), as_int(entry.get("running")),
                            as_int(entry.get("max")), reason if isinstance(reason, str) and reason else None,
                            as_int(target.get("size")), why if isinstance(why, str) else None))
    return rows


def names_from_rows(rows: Sequence[PoolRow]) -> list[str]:
    """Pool names and aliases, each once, for shell completion."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(row.name)
        for alias in row.aliases:
            seen.setdefault(alias)
    return list(seen)


class Backend(Protocol):
    """The operations of the `vmpooler` command. Errors are vmpooler_core.errors exceptions (NotFound,
    NoCapacity, Unauthorized, InvalidRequest, Conflict) or CliError (Unreachable, ...)."""

    where: str
    needs_password: bool  # token commands need the user's password (API) or not (direct on Redis)

    def checkout(self, counts: Sequence[tuple[str, int]]) -> Allocated: ...
    def give_back(self, host: str) -> None: ...
    def pools(self) -> list[PoolRow]: ...
    def names(self) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def show(self, host: str) -> tuple[str, dict[str, Any]]: ...
    def modify(self, host: str, change: Mapping[str, Any]) -> None: ...
    def snapshot(self, host: str) -> str: ...
    def revert(self, host: str, snapshot: str) -> None: ...
    def disk(self, host: str, size: int) -> str: ...
    def token_create(self, user: str, password: str | None) -> str: ...
    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]: ...
    def token_delete(self, token: str, user: str, password: str | None) -> None: ...
    def require_tokens(self) -> None: ...  # NotConfigured when the server has no auth (asked before a prompt)
    def token_vms(self, token: str) -> list[str]: ...  # the hosts checked out with `token`, still running
    def summary(self, first: str | None, last: str | None) -> dict[str, Any]: ...
    def describe(self) -> str: ...  # the server and API version talked to (for `status` and --debug)
    def close(self) -> None: ...
