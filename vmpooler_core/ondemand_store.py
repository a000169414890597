"""On-demand requests in Redis: every change of a request is one fenced script (lua/ondemand_*.lua, with
the library lua/ondemand.lua), in the original's keys and shapes (contract B3), so that our daemons and
the original's can take over each other's requests on one Redis.

The API submits, reads and deletes requests; the managers take them in and settle them (`sweep`), reserve
their clones (`reserve`), deliver their VMs (`deliver`) and put lost clones back (`lost`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, cast

from .inventory import Inventory
from .ondemand import Part, decode, encode
from .replies import Reservation, TooMany, reservation, submitted

DELETED_TTL = 1_296_000  # seconds a deleted request is kept (the original's 15 days)
READY_TTL = 2_592_000  # seconds a ready request is kept (the original's 30 days)


class Deleted(IntEnum):
    NO_SUCH_REQUEST = 0
    BEFORE = 1  # it had been deleted already
    NOW = 2


class Delivery(IntEnum):
    NOT_PENDING = 0  # nothing done: the VM was no longer pending, or not cloned for a request
    DELIVERED = 1
    CLOSED = 2  # its request needs it no more (deleted, failed or filled): pending -> completed
    FILLED = 3  # delivered, and the request is now ready


class Lost(IntEnum):
    NOT_PENDING = -1  # nothing done
    NOTHING_TO_REDO = 0  # no request, or a closed one
    PUT_BACK = 1  # its clone is back in the request's task
    FAILED = 2  # the request failed: out of retries


@dataclass(frozen=True, slots=True)
class RequestState:
    request_id: str
    status: str | None  # None while being filled; else ready, failed or deleted
    parts: tuple[Part, ...]
    delivered: dict[tuple[str, str], list[str]]  # (alias, pool) -> hosts
    token: str | None = None
    user: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """The request a clone is for, and the alias its part asked for."""

    request_id: str
    alias: str


@dataclass(frozen=True, slots=True)
class Task:
    """Clones still to start for one part of an open request."""

    alias: str
    pool: str
    count: int
    request_id: str

    @property
    def order(self) -> Order:
        return Order(self.request_id, self.alias)


@dataclass(frozen=True, slots=True)
class Sweep:
    taken: list[str] = field(default_factory=list)  # requests taken in by this sweep
    ready: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # past the request TTL
    tasks: list[Task] = field(default_factory=list)  # every open request's clones still to start


def _task(member: str) -> Task | None:
    alias, pool, count, request_id = (member.split(":", 3) + ["", "", "", ""])[:4]
    return Task(alias, pool, int(count), request_id) if alias and pool and count.isdigit() and request_id else None


class RequestStore:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.keys = inventory.keys

    # The API's ---------------------------------------------------------------------------------------

    async def submit(self, request_id: str, parts: tuple[Part, ...], now: int, token: str = "",
                     user: str = "", cap: int | None = None, demand: float | None = None) -> bool | TooMany:
        """False when a request of that id exists already; TooMany when the token, with its VMs and what its
        open requests have still to deliver, would pass `cap` (nothing written either way). With `demand`
        (the width of its buckets), the VMs asked of each pool are counted as its demand (lua/demand.lua)."""
        counted: list[str | int | float] = [demand, *(item for part in parts for item in (part.pool, part.count))] \
            if demand else []
        return submitted(await self.inventory.script("ondemand_submit", request_id, now, encode(parts), token, user,
                                                     "" if cap is None else cap, *counted))

    async def read(self, request_id: str) -> RequestState | None:
        """The request and the VMs delivered to it so far; None when there is no such request."""
        data = cast(dict[str, str], await self.inventory.redis.hgetall(self.keys.ondemand_request(request_id)))
        if not data.get("requested"):
            return None
        parts = decode(data["requested"])
        pipe = self.inventory.redis.pipeline(transaction=False)
        for part in parts:
            pipe.smembers(self.keys.ondemand_vms(request_id, part.alias, part.pool))
        found = await pipe.execute()
        delivered = {(part.alias, part.pool): sorted(hosts) for part, hosts in zip(parts, found, strict=True)}
        return RequestState(request_id, data.get("status") or None, parts, delivered, data.get("token:token"),
                            data.get("token:user"), data.get("failure_reason"))

    async def delete(self, request_id: str, history: str) -> Deleted:
        return Deleted(int(await self.inventory.script("ondemand_delete", request_id, DELETED_TTL, history)))

    # The managers' -----------------------------------------------------------------------------------

    async def sweep(self, now: float, ttl_seconds: int, history: str) -> Sweep:
        reply: Any = await self.inventory.script("ondemand_sweep", int(now), ttl_seconds, self.inventory.data_ttl,
                                                 READY_TTL, history)
        taken, ready, failed, members = reply
        tasks = [task for task in (_task(str(member)) for member in members) if task is not None]
        return Sweep(list(taken), list(ready), list(failed), tasks)

    async def reserve(self, pool: str, order: Order, host: str, template: str, *, owner: str, now: str,
                      history: str) -> Reservation:
        return reservation(await self.inventory.script("ondemand_reserve", pool, host, now, template, owner,
                                                       order.alias, order.request_id, history))

    async def deliver(self, pool: str, host: str, now: str, lifetime: int | None, *, delivered: str,
                      closed: str) -> Delivery:
        hours = "" if lifetime is None else lifetime
        return Delivery(int(await self.inventory.script("ondemand_deliver", pool, host, now, hours, READY_TTL,
                                                        delivered, closed)))

    async def lost(self, pool: str, host: str, *, forget: bool, retry: bool, max_retries: int, history: str,
                   reason: str, released: str) -> Lost:
        return Lost(int(await self.inventory.script(
            "ondemand_lost", pool, host, "forget" if forget else "completed", "retry" if retry else "",
            max_retries, self.inventory.data_ttl, history, reason, released)))
