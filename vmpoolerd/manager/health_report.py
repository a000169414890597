"""This manager's view of its providers' health, published to Redis for /healthcheck, `vmpoolerd --check`
and /status (the format and the reading side: vmpooler_core/provider_health.py).

The manager tells it how each provider call went: an inventory read, a clone. A provider that refuses the
login or cannot be reached is degraded at once, since none of its pools can be worked; a pool's clones
count as failing after CLONE_FAILURES failures in a row, so that one unlucky clone does not turn
/healthcheck red. A success clears what it proves wrong, and the next publish says so.

Only providers with a pool whose lease this manager holds are reported, and only those pools: another
manager works the rest and reports on them itself, and a view of pools one no longer works is stale.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from vmpooler_core.config import Config, Secret
from vmpooler_core.inventory import Inventory
from vmpooler_core.provider import ProviderLoginRefused, ProviderUnavailable
from vmpooler_core.provider_health import CLONE, INVENTORY, LOGIN, UNREACHABLE, UNREADY, VANISHED, Problem, Report

CLONE_FAILURES = 3  # failed clones of a pool in a row (no success between) before they count as failing


def _secrets(config: Config) -> list[str]:
    """The passwords a provider's error could conceivably echo: none of them may reach a report."""
    found = [config.redis.password.reveal()] if config.redis.password else []
    for provider in config.providers.values():
        password = provider.options.get("password")
        found.append(password.reveal() if isinstance(password, Secret) else str(password or ""))
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


class HealthReport:
    def __init__(self, inventory: Inventory, owner: str, config: Config) -> None:
        self.inventory = inventory
        self.owner = owner
        self._provider_of: Mapping[str, str] = {pool.name: pool.provider for pool in config.pools}
        self._secrets = _secrets(config)
        lease = float(config.app.manager_lease_seconds)
        self.refresh_every = lease / 3  # readers trust a report for one lease length
        self._ttl_ms = max(int(lease * 3000), 1000)  # the whole hash, once no manager refreshes it
        self._used: set[str] = set()  # providers heard from
        self._providers: dict[str, Problem] = {}  # provider -> why it cannot be worked at all
        self._unreadable: dict[str, Problem] = {}  # pool -> why its inventory cannot be read
        self._failing: dict[str, Problem] = {}  # pool -> its clones' last error, once failing
        # pool -> why the manager holds back from forgetting (VANISHED) or destroying (UNREADY) its VMs
        self._held: dict[str, dict[str, Problem]] = {VANISHED: {}, UNREADY: {}}
        self._clone_failures: Counter[str] = Counter()  # pool -> failed clones in a row
        self._first_failure: dict[str, float] = {}  # pool -> when its run of failed clones began
        self._changed = True
        self._published_at = float("-inf")
        self._reported: set[str] = set()  # providers that have a report of ours in Redis

    # What the manager saw ------------------------------------------------------------------------

    def pool_read(self, pool: str) -> None:
        """The pool's inventory was read: its provider is reachable and logged in to."""
        self._reachable(self._provider_of[pool])
        self._clear(self._unreadable, pool)

    def pool_failed(self, pool: str, error: Exception) -> None:
        """Its inventory read failed: the provider's fault when it is unavailable, else the pool's."""
        provider = self._provider_of[pool]
        if isinstance(error, ProviderUnavailable):
            kind = LOGIN if isinstance(error, ProviderLoginRefused) else UNREACHABLE
            self._problem(self._providers, provider, provider, kind, error)
        else:
            self._problem(self._unreadable, pool, provider, INVENTORY, error)

    def clone_done(self, pool: str) -> None:
        self._reachable(self._provider_of[pool])
        self._clone_failures.pop(pool, None)
        self._first_failure.pop(pool, None)
        self._clear(self._failing, pool)

    def clone_failed(self, pool: str, error: Exception) -> None:
        if isinstance(error, ProviderUnavailable):
            self.pool_failed(pool, error)
            return
        self._clone_failures[pool] += 1
        self._first_failure.setdefault(pool, time.time())
        if self._clone_failures[pool] >= CLONE_FAILURES:
            self._problem(self._failing, pool, self._provider_of[pool], CLONE, error,
                          since=self._first_failure[pool])

    def holding(self, pool: str, kind: str, detail: str | None) -> bool:
        """The manager holds back from the pool's VMs (`kind` VANISHED or UNREADY), `detail` saying why;
        None when it no longer does. True when it starts holding back (for a log line)."""
        table = self._held[kind]
        if detail is None:
            self._clear(table, pool)
            return False
        started = pool not in table
        self._problem(table, pool, self._provider_of[pool], kind, detail)
        return started

    def _reachable(self, provider: str) -> None:
        self._used.add(provider)
        self._clear(self._providers, provider)

    def _clear(self, table: dict[str, Problem], key: str) -> None:
        if table.pop(key, None) is not None:
            self._changed = True

    def _problem(self, table: dict[str, Problem], key: str, provider: str, kind: str, error: Exception | str,
                 since: float | None = None) -> None:
        self._used.add(provider)
        old = table.get(key)
        started = old.since if old is not None else since if since is not None else time.time()
        new = Problem(kind, self._scrub(str(error) or type(error).__name__), started)
        if new != old:
            table[key] = new
            self._changed = True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # Publishing ----------------------------------------------------------------------------------

    async def publish(self, held: Iterable[str]) -> None:
        """Write this manager's reports when something changed or they are due for a refresh; `held` are
        the pools whose lease it holds. Raises Redis's errors (the caller knows how to back off)."""
        now = time.time()
        if not self._changed and now - self._published_at < self.refresh_every:
            return
        reports = self._reports(set(held), now)
        keys = self.inventory.keys
        writes: list[tuple[str, ...]] = []
        for provider, report in reports.items():
            writes += [("HSET", keys.provider_health(provider), self.owner, report.encode()),
                       ("PEXPIRE", keys.provider_health(provider), str(self._ttl_ms))]
        writes += [("HDEL", keys.provider_health(provider), self.owner) for provider in self._reported - set(reports)]
        if writes:
            await self.inventory.write(*writes)
        self._reported = set(reports)
        self._changed = False
        self._published_at = now
        if reports:
            pipe = self.inventory.redis.pipeline(transaction=False)
            for provider in reports:
                pipe.hgetall(keys.provider_health(provider))
            await self._prune(list(reports), await pipe.execute(), now)

    def _reports(self, held: set[str], now: float) -> dict[str, Report]:
        reports: dict[str, Report] = {}
        for provider in sorted(self._used):
            pools = sorted(pool for pool in held if self._provider_of.get(pool) == provider)
            if not pools:
                continue
            problems = {pool: problem for pool in pools
                        if (problem := self._unreadable.get(pool) or self._held[VANISHED].get(pool)
                            or self._held[UNREADY].get(pool) or self._failing.get(pool)) is not None}
            reports[provider] = Report(now, self._providers.get(provider), problems)
        return reports

    async def _prune(self, providers: list[str], hashes: list[dict[str, str]], now: float) -> None:
        """Drop the reports of managers gone for good (each restart is a new manager id), which the
        other managers' refreshes would otherwise keep in the hash for ever."""
        stale_after = self._ttl_ms / 1000
        dropped: list[tuple[str, ...]] = []
        for provider, fields in zip(providers, hashes, strict=True):
            for owner, raw in fields.items():
                report = Report.decode(raw)
                if report is None or now - report.at > stale_after:
                    dropped.append(("HDEL", self.inventory.keys.provider_health(provider), owner))
        if dropped:
            await self.inventory.write(*dropped)

    async def withdraw(self) -> None:
        """This manager stops: its reports go with it (the next manager reports afresh)."""
        if not self._reported:
            return
        await self.inventory.write(*(("HDEL", self.inventory.keys.provider_health(provider), self.owner)
                                     for provider in self._reported))
        self._reported = set()
