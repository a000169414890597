"""The VM inventory in Redis: every state transition, each one atomic and one round trip.

States per pool (sets): pending -> ready -> running -> completed -> (destroyed), plus discovered for
VMs found in a pool folder that Redis did not know. A VM is in at most one set of its pool at any
moment; the Lua scripts in ./lua guarantee it across any number of API and manager processes.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from redis import asyncio as aioredis

from . import clock, replies, scripts
from .guards import Guard
from .keys import RECENT_KEPT, STATES, Keys
from .primary import FailingOver, NotDurable
from .ratelimit import Bucket

log = logging.getLogger("vmpooler.inventory")

CheckoutEntry = tuple[str, int, Sequence[str]]  # requested name, count, candidate pools

_TOKEN_FIRST = string.ascii_lowercase[:25]  # a-y, as the original's tokens
_TOKEN_REST = string.ascii_lowercase + string.digits


def new_token() -> str:
    return secrets.choice(_TOKEN_FIRST) + "".join(secrets.choice(_TOKEN_REST) for _ in range(31))


def _changed(reply: Any) -> bool:
    """A checkout or return reply that moved a VM (the others changed nothing durability must confirm)."""
    return isinstance(reply, list) and bool(reply) and reply[0] == "ok"


class Inventory:
    """`durability` (config.DURABILITY): what a checkout and a return wait for before they return."""

    def __init__(self, client: aioredis.Redis, keys: Keys | None = None, data_ttl_hours: int = 168,
                 durability: str = "none") -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.data_ttl = data_ttl_hours * 3600
        self._scripts = scripts.for_client(client, durability=durability)

    async def _run(self, name: str, *args: str | int | float, durable: scripts.Durable | None = None) -> Any:
        return await self._scripts.run(name, [self.keys.prefix, *args], durable)

    async def script(self, name: str, *args: str | int | float) -> Any:
        """Run one of scripts.NAMES (the key prefix goes first), for the core's modules that keep state of
        their own beside the VMs' (ondemand_store.py)."""
        return await self._run(name, *args)

    async def _write(self, *commands: tuple[str, ...], guard: Guard | None = None) -> list[Any]:
        """Plain writes, behind the fence (lua/write.lua), in one round trip; the reply of each. Every
        write goes through a script, the manager's bookkeeping too: a former primary that is about to be
        demoted must not accept a write it will throw away (a queued task taken twice, a pooler id
        claimed twice). With a `guard`, made only if its conditions hold (else its refusal is raised)."""
        words: list[str] = []
        for command in (*(guard.conditions(self.keys) if guard else ()), *commands):
            words += [str(len(command)), *command]
        reply = list(await self._run("write", *words))
        if guard is not None and reply[:1] == ["refused"]:
            raise guard.refusal(str(reply[1]))
        return reply

    async def write(self, *commands: tuple[str, ...]) -> list[Any]:
        """`_write` for the modules that keep keys of their own (the manager's provider health reports, the
        pool configuration API's settings)."""
        return await self._write(*commands)

    # Transitions ---------------------------------------------------------------------------------

    async def checkout(self, entries: Sequence[CheckoutEntry], *, token: str = "",
                       lifetime: int | None = None, now: str | None = None, cap: int | None = None,
                       rate: Bucket | None = None, client: str = "-", request_id: str = "-",
                       demand: float | None = None) -> replies.CheckoutReply:
        """checkout.lua, all or nothing: TooMany when the token would go over `cap`, OverRate when the
        request is over `rate`. `client` and `request_id` go into the history of each VM taken. With
        `demand` (the width of its buckets), what each pool was asked for is counted (lua/demand.lua)."""
        hours = "" if lifetime is None else lifetime
        stamp = now or clock.stamp()
        args: list[str | int | float] = [stamp, token, hours, client, request_id, len(entries)]
        for requested, count, candidates in entries:
            args += [requested, count, len(candidates), *candidates]
        if cap is not None or rate is not None or demand:
            args.append("" if cap is None else cap)
        if rate is not None or demand:
            args += rate.args() if rate is not None else [""] * 7
        if demand:
            args.append(demand)
        taken: list[Any] = []

        def durable(reply: Any) -> bool:
            taken[:] = reply if _changed(reply) else []
            return bool(taken)

        try:
            return replies.checkout(await self._run("checkout", *args, durable=durable))
        except NotDurable:
            await self._put_back(stamp, taken)
            raise

    async def _put_back(self, stamp: str, reply: list[Any]) -> None:
        """Undo a checkout whose answer durability withheld (undo_checkout.lua): its hosts go back to ready.
        When Redis cannot be told (the primary just died), the change was on a primary whose writes are
        lost anyway, or, if a replica has it, the VMs stay running held by nobody until their lifetime
        ends: never handed out twice."""
        pairs: list[str] = []
        for index in range(1, len(reply) - 2, 3):  # {"ok", requested, pool, host, ...}
            pairs += [reply[index + 1], reply[index + 2]]
        try:
            await self._run("undo_checkout", stamp, *pairs)
        except FailingOver:
            pass  # the primary that has the change is being replaced: the change goes with it
        except Exception as err:  # the client is told 503 whatever happens here
            log.warning("checkout not confirmed and not undone (%s: %s): %s stay running until their lifetime "
                        "ends, held by nobody", type(err).__name__, err, ", ".join(pairs[1::2]))

    async def return_vm(self, host: str, token: str = "", rate: Bucket | None = None, *, now: str | None = None,
                        client: str = "-", request_id: str = "-") -> replies.ReturnReply:
        """return.lua: running -> completed, unless the VM was checked out with another token. `client` and
        `request_id` go into the VM's history. With `durability`, NotDurable when the return was not
        confirmed: it is not undone (the client wanted the VM gone; a retry is answered 404 "not checked
        out", or 200 when it had not reached a replica that was then promoted)."""
        return replies.returned(await self._run("return", host, token, now or clock.stamp(), client, request_id,
                                                *(rate.args() if rate else ()), durable=_changed))

    async def rate_limit(self, rate: Bucket) -> replies.RateReply:
        """Count one request against its bucket (ratelimit.lua)."""
        return replies.rate(await self._run("ratelimit", *rate.args()))

    async def login_attempt(self, *args: str | int) -> list[Any]:
        """lua/login_attempt.lua (its arguments are login_throttle.py's to build)."""
        return list(await self._run("login_attempt", *args))

    async def login_outcome(self, *args: str | int) -> None:
        """lua/login_outcome.lua (its arguments are login_throttle.py's to build)."""
        await self._run("login_outcome", *args)

    async def held(self, token: str) -> set[str]:
        """The hosts checked out with `token` and still running, as the per-token cap counts them."""
        return cast(set[str], await self.redis.smembers(self.keys.held(token)))

    async def index_held(self, pools: Iterable[str]) -> None:
        """Every running VM checked out with a token into its token's held set (lua/held_sets.lua): the
        original's, handed out while it ran on this Redis, too."""
        await self._run("index_held", *pools)

    async def move(self, pool: str, host: str, source: str, target: str,
                   fields: Mapping[str, object] | None = None, history: str = "") -> bool:
        """`history`: an entry for the VM's history (audit.entry), written only if the VM moves."""
        flat: list[str | int | float] = []
        for field, value in (fields or {}).items():
            flat += [field, str(value)]
        return replies.moved(await self._run("move", pool, host, source, target, history, *flat))

    async def forget(self, pool: str, host: str, *, destroyed: bool, only_from: str | None = None,
                     history: str = "") -> replies.ForgetResult:
        """Out of every set of its pool. With `only_from`, only if it is still in that state (else Kept).
        `history`: an entry for the VM's history (audit.entry), written only if the VM left a set."""
        stamp = clock.stamp() if destroyed else ""
        return replies.forgotten(await self._run("forget", pool, host, stamp, self.data_ttl, only_from or "",
                                                 history))

    async def discover(self, pool: str, hosts: Iterable[str]) -> list[str]:
        hosts = list(hosts)
        if not hosts:
            return []
        return replies.discovered(await self._run("discover", pool, *hosts))

    async def spare(self, pool: str, marks: Mapping[str, str | None]) -> replies.Spared:
        """Record the unknown VMs of the pool's folder that are not this pooler's to destroy (host -> the
        pooler mark they carry, None for none): all of them, as every other entry is dropped."""
        flat: list[str] = []
        for host, mark in marks.items():
            flat += [host, mark or ""]
        return replies.spared(await self._run("spare", pool, *flat))

    async def claim_pooler_id(self, candidate: str) -> str:
        """The pooler id stored in Redis, `candidate` stored first when there is none (one transaction),
        so every manager on this Redis gets the same."""
        key = self.keys.pooler_id()
        _, stored = await self._write(("SET", key, candidate, "NX"), ("GET", key))
        return str(stored)

    # The manager's fill, coordination and statistics ---------------------------------------------

    async def reserve_clone(self, pool: str, host: str, template: str, *, size: int, owner: str,
                            now: str | None = None, history: str = "") -> replies.Reservation:
        """Record a clone about to start, only while `owner` holds the pool's lease and ready + pending
        is below `size`. `history`: the first entry of the VM's history (audit.entry)."""
        return replies.reservation(await self._run("add_pending", pool, host, now or clock.stamp(), template,
                                                   size, owner, history))

    async def pool_state(self, pool: str) -> tuple[dict[str, set[str]], dict[str, str], dict[str, str]]:
        """Every state set of one pool, its `active` hash (host -> checkout) and the VMs of its folder left
        alone (host -> pooler mark, see `spare`), in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        for state in STATES:
            pipe.smembers(self.keys.state(state, pool))
        pipe.hgetall(self.keys.active(pool))
        pipe.hgetall(self.keys.spared(pool))
        *sets, active, spared = await pipe.execute()
        return ({state: set(members) for state, members in zip(STATES, sets, strict=True)}, dict(active),
                dict(spared))

    async def settle_discovered(self, pool: str, hosts: Iterable[str]) -> list[str]:
        """Discovered hosts still in the provider -> completed (or just out of discovered when they
        turned up in another set); returns those moved to completed."""
        hosts = list(hosts)
        if not hosts:
            return []
        return replies.settled(await self._run("settle_discovered", pool, *hosts))

    async def leases(self, owner: str, pools: Sequence[str], mode: str, seconds: float) -> set[str]:
        """Acquire, renew or release pool leases (see lua/lease.lua); returns the pools held after."""
        if not pools:
            return set()
        return replies.leases(await self._run("lease", owner, mode, int(seconds * 1000), *pools), pools)

    async def presence(self, owner: str, now: float, stale_after: float, clones: int | None = None,
                       leave: bool = False) -> set[str]:
        """Heartbeat (or leave) and recount the clone counter; returns the live managers' ids."""
        return set(replies.present(await self._run("presence", owner, f"{now:.3f}", f"{stale_after:.3f}",
                                                   "" if clones is None else clones, "leave" if leave else "")))

    async def record_clone(self, pool: str, host: str, seconds: float, date: str | None = None) -> None:
        """The VM's `clone_time`, the day's clone statistics and the pool's recent clones, in one
        transaction."""
        await self._write(("HSET", self.keys.vm(host), "clone_time", f"{seconds:.2f}"),
                          ("HSET", self.keys.clone_stats(date or clock.today()), f"{pool}:{host}", f"{seconds:.2f}"),
                          *self._recent("clone", pool, time.time(), seconds))

    async def record_boot(self, pool: str, host: str, seconds: float, date: str | None = None,
                          at: str | None = None) -> None:
        """The day's boot statistics, the pool's recent boots and its last boot (API v3's `lastBoot`), in
        one transaction."""
        stamp = at or clock.stamp()
        await self._write(("HSET", self.keys.boot_stats(date or clock.today()), f"{pool}:{host}", f"{seconds:.2f}"),
                          ("HSET", self.keys.lastboot(), pool, stamp),
                          *self._recent("boot", pool, clock.parse(stamp) or time.time(), seconds))

    def _recent(self, phase: str, pool: str, epoch: float, seconds: float) -> tuple[tuple[str, ...], ...]:
        """Append to the pool's recent clones or boots (`Keys.recent`), the newest RECENT_KEPT kept; gone a
        while after the last (a pool taken out of the configuration)."""
        key = self.keys.recent(phase, pool)
        return (("RPUSH", key, f"{epoch:.0f} {seconds:.2f}"), ("LTRIM", key, str(-RECENT_KEPT), "-1"),
                ("EXPIRE", key, str(max(self.data_ttl, 86400))))

    async def mark_empty(self, pool: str, empty: bool) -> bool:
        """Set or clear the pool's empty marker; True when that changed it (so it is logged once)."""
        command = ("SET", self.keys.empty(pool), "true", "NX") if empty else ("DEL", self.keys.empty(pool))
        return bool((await self._write(command))[0])

    async def clone_slot(self, owner: str, now: float, stale_after: float, held: int,
                         limit: int | None = None) -> bool:
        """Publish that `owner` holds `held` of the clone slots shared by all managers (clone_slot.lua);
        with `limit` (task_limit), only if the live managers' slots stay within it: False when not."""
        granted, _ = await self._run("clone_slot", owner, f"{now:.3f}", f"{stale_after:.3f}", held,
                                     "" if limit is None else limit)
        return bool(granted)

    async def take_tasks(self, owner: str, queues: Sequence[str], count: int, *, now: float, stale_after: float,
                         own: bool = False) -> tuple[int, dict[str, list[str]]]:
        """Up to `count` "<host>:<argument>" tasks from each queue (TASK_QUEUES), moved into `owner`'s record
        of tasks taken until `task_done` (take_tasks.lua). First, the records of dead managers (and with
        `own`, `owner`'s from an earlier process) go back to the queues: returns how many did, and the
        tasks taken per queue."""
        reply = await self._run("take_tasks", owner, f"{now:.3f}", f"{stale_after:.3f}", "own" if own else "",
                                count, *queues)
        taken: dict[str, list[str]] = {}
        at = 1
        for queue in queues:
            size = int(reply[at])
            taken[queue] = [str(task) for task in reply[at + 1:at + 1 + size]]
            at += 1 + size
        return int(reply[0]), taken

    async def task_done(self, owner: str, queue: str, task: str, fields: Mapping[str, object] | None = None, *,
                        back: bool = False) -> bool:
        """A taken task leaves `owner`'s record: done, with `fields` set on its VM in the same step, or
        `back` in its queue. False when the record no longer had it (it was put back meanwhile)."""
        flat: list[str] = []
        for field, value in (fields or {}).items():
            flat += [field, str(value)]
        return bool(await self._run("task_done", owner, "back" if back else "done", queue, task, *flat))

    async def set_field_many(self, hosts: Sequence[str], field: str, value: str) -> None:
        """One field on many VM hashes (e.g. the `check` stamp of every VM a pass re-checked)."""
        if not hosts:
            return
        await self._write(*(("HSET", self.keys.vm(host), field, value) for host in hosts))

    async def start_lifetime(self, pool: str, host: str, stamp: str) -> None:
        """Give a running VM with no checkout time one (HSETNX: a real one is never overwritten)."""
        await self._write(("HSETNX", self.keys.active(pool), host, stamp))

    async def register_pools(self, pools: Iterable[str]) -> None:
        """A manager's start: its pools in the original's pool list, and the original's count of on-demand
        clones in flight at 0 (ours count them with the others), as its managers set it at their start."""
        names = list(pools)
        await self._write(("SET", self.keys.ondemand_clone_tasks(), "0"),
                          *([("SADD", self.keys.pools(), *names)] if names else []))

    # Reads ---------------------------------------------------------------------------------------

    async def counts(self, pools: Sequence[str]) -> dict[str, dict[str, int]]:
        """SCARD of every state of every pool, one pipelined round trip: O(pools), not O(VMs)."""
        pipe = self.redis.pipeline(transaction=False)
        for pool in pools:
            for state in STATES:
                pipe.scard(self.keys.state(state, pool))
        flat = await pipe.execute()
        width = len(STATES)
        return {pool: dict(zip(STATES, flat[i * width:(i + 1) * width], strict=True))
                for i, pool in enumerate(pools)}

    async def vm(self, host: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.vm(host)))

    async def history(self, host: str) -> list[str]:
        """The VM's history entries as stored (audit.read_entry reads one), oldest first."""
        return cast(list[str], await self.redis.lrange(self.keys.history(host), 0, -1))

    async def vms(self, hosts: Sequence[str], fields: Sequence[str]) -> dict[str, list[str | None]]:
        """Chosen fields of many VM hashes in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.hmget(self.keys.vm(host), list(fields))
        return dict(zip(hosts, await pipe.execute(), strict=True))

    # VM attributes -------------------------------------------------------------------------------

    async def set_fields(self, host: str, fields: Mapping[str, object]) -> None:
        flat: list[str] = []
        for field, value in fields.items():
            flat += [field, str(value)]
        if flat:
            await self._write(("HSET", self.keys.vm(host), *flat))

    async def modify(self, host: str, fields: Mapping[str, object], tags: Mapping[str, str], *,
                     guard: Guard | None = None, date: str | None = None) -> None:
        """Fields (a lifetime) and tags of a VM in one write; tags go on the VM and into the day's tag
        statistics."""
        day = date or clock.today()
        commands: list[tuple[str, ...]] = []
        if fields:
            commands.append(("HSET", self.keys.vm(host), *(str(word) for pair in fields.items() for word in pair)))
        for tag, value in tags.items():
            commands += [("HSET", self.keys.vm(host), f"tag:{tag}", value),
                         ("HSET", self.keys.tag_stats(day), f"{host}:{tag}", value)]
        if commands:
            await self._write(*commands, guard=guard)

    async def queue_task(self, queue_key: str, host: str, argument: str, guard: Guard | None = None) -> None:
        await self._write(("SADD", queue_key, f"{host}:{argument}"), guard=guard)

    async def record_stat(self, key: str, field: str, seconds: float) -> None:
        await self._write(("HSET", key, field, f"{seconds:.2f}"))

    # Tokens --------------------------------------------------------------------------------------

    async def create_token(self, user: str) -> str:
        token = new_token()
        await self._write(("HSET", self.keys.token(token), "user", user, "created", clock.stamp()))
        return token

    async def token(self, token: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.token(token)))

    async def tokens(self) -> dict[str, dict[str, str]]:
        """Every token with its fields; SCAN, never KEYS, so a big Redis is not blocked."""
        names = [key async for key in self.redis.scan_iter(match=self.keys.token_pattern(), count=1000)]
        pipe = self.redis.pipeline(transaction=False)
        for key in names:
            pipe.hgetall(key)
        start = len(self.keys.token(""))
        return {key[start:]: dict(data) for key, data in zip(names, await pipe.execute(), strict=True) if data}

    async def delete_token(self, token: str) -> bool:
        return bool((await self._write(("DEL", self.keys.token(token))))[0])

    async def touch_token(self, token: str, now: str | None = None) -> str | None:
        """Stamp a token's `last` use and return its user; None when the token does not exist."""
        return replies.token_user(await self._run("touch_token", token, now or clock.stamp()))

    async def status_figures(self, pools: Sequence[str], date: str) -> replies.StatusFigures:
        """Everything /status counts (status.lua), in one round trip."""
        return replies.status(await self._run("status", date, *pools), pools)
