"""Checking VMs out and giving them back: the seed's rules, enforced in one Lua round trip.

- any unknown pool or alias in the request -> NotFound, nothing taken;
- any pool short of VMs -> NoCapacity, everything taken for the request goes back (atomically, so no
  other client ever sees it gone);
- a token over its cap (`config: max_vms_per_token`), counting what it already holds -> TooManyVms,
  nothing taken (the check is in the same script, so concurrent checkouts cannot pass it together);
- over its rate limit (when the caller passes a bucket) -> RateLimited, nothing taken;
- otherwise every VM moves ready -> running with its checkout stamp, keyed by the real pool name.

Each VM checked out or returned gets a line in the audit log and an entry in its history (audit.py); a
refused attempt gets a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from . import audit
from .access import Access
from .audit import ANONYMOUS, Caller
from .config import Config
from .errors import (
    InvalidRequest,
    NoCapacity,
    NotCheckedOut,
    NotFound,
    TooManyVms,
    Unauthorized,
    UnknownPool,
    VmpoolerError,
)
from .inventory import Inventory
from .metrics import Metrics, Outcome
from .ratelimit import Bucket, exceeded
from .replies import BadToken, CheckedOut, Empty, NoSuchVm, NotOwner, NotRunning, OverRate, Returned, TooMany
from .request import CheckoutRequest, validate


@dataclass(frozen=True, slots=True)
class Allocation:
    vms: tuple[tuple[str, str, str], ...]  # (requested name, pool, host), in allocation order

    def by_pool(self) -> dict[str, list[str]]:
        """Hosts keyed by the real pool name even when an alias was asked for; first-seen order."""
        result: dict[str, list[str]] = {}
        for _, pool, host in self.vms:
            result.setdefault(pool, []).append(host)
        return result

    def hosts(self) -> list[str]:
        return [host for _, _, host in self.vms]


class Checkout:
    """Check out and return VMs; one instance per process, built from the config and a client."""

    def __init__(self, config: Config, inventory: Inventory, metrics: Metrics) -> None:
        self.config = config
        self.inventory = inventory
        self.metrics = metrics
        self.access = Access(config, inventory)

    async def take(self, request: CheckoutRequest, token: str | None = None, rate: Bucket | None = None,
                   caller: Caller = ANONYMOUS) -> Allocation:
        try:  # (not audit.refusals: a generator-based context manager costs a checkout a microsecond or two)
            allocation, user = await self._take(request, token, rate, caller)
        except VmpoolerError as err:
            audit.refused("checkout", caller, err, pool="+".join(request.names()))
            raise
        who = caller.as_user(user)
        for _, pool, host in allocation.vms:
            audit.record("checkout", who, pool=pool, host=host)
        return allocation

    async def _take(self, request: CheckoutRequest, token: str | None, rate: Bucket | None,
                    caller: Caller) -> tuple[Allocation, str | None]:
        try:
            validate(request, self.config)
        except UnknownPool as err:
            for name in err.names:
                self.metrics.checkout(Outcome.INVALID, name)
            raise
        except InvalidRequest:
            self.metrics.checkout(Outcome.INVALID)
            raise
        # Direct pool requests are served first and then aliases, fewest target pools first: a
        # flexible alias must not take the last VM of a pool that another entry can only get there.
        entries = sorted(((name, count, self.config.candidates(name)) for name, count in request.counts if count),
                         key=lambda e: (e[0] not in self.config.pool_index, len(e[2])))
        use_token = self.access.credited(token)
        lifetime = self.config.app.vm_lifetime_auth if use_token else None
        reply = await self.inventory.checkout(entries, token=use_token,
                                              lifetime=lifetime if lifetime and lifetime > 0 else None,
                                              cap=self.config.app.max_vms_per_token, rate=rate,
                                              client=caller.client, request_id=caller.request_id,
                                              demand=self.config.demand_width)
        match reply:
            case CheckedOut(served, user):
                # Report in the order the client asked, whatever order the script served the entries in.
                position = {name: index for index, name in enumerate(request.names())}
                vms = tuple(sorted(served, key=lambda vm: position[vm[0]]))
                for _, pool, _ in vms:
                    self.metrics.checkout(Outcome.SUCCESS, pool)
                return Allocation(vms), user
            case Empty(name):
                self.metrics.checkout(Outcome.EMPTY, name)
                raise NoCapacity(f"not enough ready VMs for {name!r}", name)
            case BadToken():
                raise Unauthorized("invalid token")
            case TooMany(held, cap):
                self.metrics.checkout(Outcome.TOOMANY)
                raise TooManyVms(held, cap)
            case OverRate():
                self.metrics.checkout(Outcome.RATELIMITED)
                raise exceeded(reply)
        assert_never(reply)

    async def give_back(self, host: str, token: str | None = None, rate: Bucket | None = None,
                        caller: Caller = ANONYMOUS) -> str:
        """running -> completed; returns the pool. The VM is destroyed by the manager."""
        try:
            reply = await self._give_back(host, token, rate, caller)
        except VmpoolerError as err:
            audit.refused("return", caller, err, host=host)
            raise
        audit.record("return", caller.as_user(reply.user), pool=reply.pool, host=host)
        return reply.pool

    async def _give_back(self, host: str, token: str | None, rate: Bucket | None, caller: Caller) -> Returned:
        reply = await self.inventory.return_vm(host, token or "", rate, client=caller.client,
                                               request_id=caller.request_id)
        match reply:
            case Returned():
                return reply
            case NoSuchVm():
                raise NotFound(f"no VM named {host!r}")
            case NotOwner(revoked=True):
                raise Unauthorized(f"{host} was checked out with a token that has been revoked")
            case NotOwner():
                raise Unauthorized(f"{host} was checked out with another token" if token else
                                   f"{host} was checked out with a token, and none was sent")
            case NotRunning():
                raise NotCheckedOut(f"{host} is not checked out")
            case OverRate():
                raise exceeded(reply)
        assert_never(reply)
