"""What the Lua scripts of ./lua answer, as types.

inventory.py parses each reply right where it runs the script, so callers match on these types instead of
comparing strings and indexing lists. A reply of a shape this code does not know raises UnexpectedReply:
that is a bug (or scripts and code of different versions), said plainly rather than as an IndexError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import wraps
from typing import Any, ParamSpec, TypeVar


class UnexpectedReply(RuntimeError):
    def __init__(self, script: str, reply: object) -> None:
        self.script = script
        self.reply = reply
        super().__init__(f"{script}.lua answered {reply!r:.300}, a reply this code does not know (a bug)")


P = ParamSpec("P")
T = TypeVar("T")


def _parser(script: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Any error while reading the reply (a wrong tag, length or type) becomes UnexpectedReply."""
    def wrap(parse: Callable[P, T]) -> Callable[P, T]:
        @wraps(parse)
        def checked(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return parse(*args, **kwargs)
            except (ValueError, TypeError, IndexError) as err:
                raise UnexpectedReply(script, args[0] if args else None) from err
        return checked
    return wrap


def _int(value: object) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return int(value)
    raise ValueError(value)


def _strings(values: Sequence[object]) -> list[str]:
    if not all(isinstance(value, str) for value in values):
        raise TypeError(values)
    return [str(value) for value in values]


# Rate limits (gcra.lua, answered by checkout.lua, return.lua and ratelimit.lua) ------------------

@dataclass(frozen=True, slots=True)
class OverRate:
    """Over the rate limit: nothing was done or counted."""

    limit: int
    period_ms: int
    retry_ms: int  # until one more request is allowed
    reset_ms: int  # epoch ms when the whole allowance is back


def _over_rate(reply: Sequence[object]) -> OverRate:
    _tag, limit, period, retry, reset = reply
    return OverRate(_int(limit), _int(period), _int(retry), _int(reset))


@dataclass(frozen=True, slots=True)
class Counted:
    """Under the rate limit: the request is counted and goes ahead."""


RateReply = Counted | OverRate


@_parser("ratelimit")
def rate(reply: Any) -> RateReply:
    match reply:
        case ["ok"]:
            return Counted()
        case ["ratelimited", *_]:
            return _over_rate(reply)
    raise ValueError(reply)


# checkout.lua --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckedOut:
    vms: tuple[tuple[str, str, str], ...]  # (requested name, pool, host), in the order served
    user: str | None = None  # the token's user, when the checkout was made with a token


@dataclass(frozen=True, slots=True)
class Empty:
    """A pool was short for `name`; nothing was taken."""

    name: str


@dataclass(frozen=True, slots=True)
class BadToken:
    """The token does not exist; nothing was taken."""


@dataclass(frozen=True, slots=True)
class TooMany:
    """The token would hold more than its cap; nothing was taken."""

    held: int
    cap: int


CheckoutReply = CheckedOut | Empty | BadToken | TooMany | OverRate


@_parser("checkout")
def checkout(reply: Any) -> CheckoutReply:
    match reply:
        case ["ok", *flat] if len(flat) % 3 in (0, 1):
            names = _strings(flat)
            user = names.pop() if len(names) % 3 else None
            return CheckedOut(tuple(zip(names[0::3], names[1::3], names[2::3], strict=True)), user)
        case ["empty", str(name)]:
            return Empty(name)
        case ["unauthorized"]:
            return BadToken()
        case ["toomany", held, cap]:
            return TooMany(_int(held), _int(cap))
        case ["ratelimited", *_]:
            return _over_rate(reply)
    raise ValueError(reply)


@_parser("ondemand_submit")
def submitted(reply: Any) -> bool | TooMany:
    """True: written; False: a request of that id exists; TooMany: the token's cap (nothing written)."""
    match reply:
        case 0 | 1:
            return bool(reply)
        case ["toomany", held, cap]:
            return TooMany(_int(held), _int(cap))
    raise ValueError(reply)


# return.lua ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Returned:
    pool: str
    user: str | None = None  # the token's user, when the VM was checked out (and returned) with a token


@dataclass(frozen=True, slots=True)
class NoSuchVm:
    pass


@dataclass(frozen=True, slots=True)
class NotOwner:
    """The VM was checked out with another token, or (`revoked`) with this one, which no longer exists;
    nothing changed."""

    pool: str
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class NotRunning:
    pool: str


ReturnReply = Returned | NoSuchVm | NotOwner | NotRunning | OverRate


@_parser("return")
def returned(reply: Any) -> ReturnReply:
    match reply:
        case ["ok", str(pool)]:
            return Returned(pool)
        case ["ok", str(pool), str(user)]:
            return Returned(pool, user)
        case ["notfound"]:
            return NoSuchVm()
        case ["unauthorized", str(pool)]:
            return NotOwner(pool)
        case ["unauthorized", str(pool), "revoked"]:
            return NotOwner(pool, revoked=True)
        case ["notrunning", str(pool)]:
            return NotRunning(pool)
        case ["ratelimited", *_]:
            return _over_rate(reply)
    raise ValueError(reply)


# The manager's scripts -----------------------------------------------------------------------------

class Reservation(Enum):
    """add_pending.lua with a size and an owner: may the manager clone a VM under this name now?"""

    RESERVED = 1  # recorded in pending: clone it
    TAKEN = 0  # the host name is in use: pick another
    FULL = -1  # ready + pending already reach the pool's size
    LEASE_LOST = -2  # another manager holds the pool now


@_parser("add_pending")
def reservation(reply: Any) -> Reservation:
    return Reservation(_int(reply))


@dataclass(frozen=True, slots=True)
class Forgotten:
    sets: int  # how many of its pool's sets the VM left (0 when it was in none)


@dataclass(frozen=True, slots=True)
class Kept:
    """The VM was no longer in the state the caller required, so nothing changed."""


ForgetResult = Forgotten | Kept


@_parser("forget")
def forgotten(reply: Any) -> ForgetResult:
    removed = _int(reply)
    if removed == -1:
        return Kept()
    if removed < 0:
        raise ValueError(reply)
    return Forgotten(removed)


def _flag(value: object) -> bool:
    if value not in (0, 1):
        raise ValueError(value)
    return value == 1


@_parser("move")
def moved(reply: Any) -> bool:
    return _flag(reply)


@_parser("lease")
def leases(reply: Any, pools: Sequence[str]) -> set[str]:
    """The pools whose lease the manager holds after the call (one 0/1 per pool asked about)."""
    return {pool for pool, mine in zip(pools, reply, strict=True) if _flag(mine)}


def _hosts(script: str) -> Callable[[Any], list[str]]:
    @_parser(script)
    def parse(reply: Any) -> list[str]:
        if not isinstance(reply, list):
            raise TypeError(reply)
        return _strings(reply)
    return parse


discovered = _hosts("discover")  # the hosts that were new, now in `discovered`
settled = _hosts("settle_discovered")  # the hosts moved to `completed`
present = _hosts("presence")  # the live managers' ids


@dataclass(frozen=True, slots=True)
class Spared:
    """What spare.lua changed: VMs newly left alone and those whose mark changed (host -> mark, "" for
    none), and the hosts no longer left alone (gone from the folder, or now known or ours)."""

    new: dict[str, str]
    changed: dict[str, str]
    dropped: list[str]


def _pairs(values: Sequence[object]) -> dict[str, str]:
    flat = _strings(values)
    if len(flat) % 2:
        raise ValueError(values)
    return dict(zip(flat[::2], flat[1::2], strict=True))


@_parser("spare")
def spared(reply: Any) -> Spared:
    new, changed, dropped = reply
    return Spared(_pairs(new), _pairs(changed), _strings(dropped))


@_parser("touch_token")
def token_user(reply: Any) -> str | None:
    """The token's user; None when the token does not exist."""
    if reply is None or isinstance(reply, str):
        return reply
    raise TypeError(reply)


# status.lua ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Durations:
    """The day's clone or boot times."""

    count: int
    total: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class PoolFigures:
    ready: int
    running: int
    pending: int
    completed: int
    size: int | None = None  # set through the pool configuration API; None: the file's
    lastboot: str = ""  # when a VM of the pool last became ready ("": never recorded)


@dataclass(frozen=True, slots=True)
class StatusFigures:
    cloning: int  # clones in flight, over all managers
    boot: Durations
    clone: Durations
    pools: dict[str, PoolFigures]  # in the order asked for


def _durations(figures: Sequence[object]) -> Durations:
    count, total, low, high = figures
    return Durations(_int(count), float(str(total)), float(str(low)), float(str(high)))


@_parser("status")
def status(reply: Any, pools: Sequence[str]) -> StatusFigures:
    width = 6
    if not isinstance(reply, list) or len(reply) != 9 + width * len(pools):
        raise ValueError(reply)
    figures: dict[str, PoolFigures] = {}
    for index, pool in enumerate(pools):
        values = reply[9 + index * width:9 + (index + 1) * width]
        size = str(values[4])
        ready, running, pending, completed = (_int(value) for value in values[:4])
        figures[pool] = PoolFigures(ready, running, pending, completed, size=int(size) if size.isdigit() else None,
                                    lastboot=str(values[5]))
    return StatusFigures(_int(reply[0]), _durations(reply[1:5]), _durations(reply[5:9]), figures)
