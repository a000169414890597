"""The Lua scripts (in ./lua/*.lua), and the runners that run them.

Every VM state change is one of these scripts, so their call path is the hot path of the API: a
checkout or a return is one script call and nothing else. Two runners honour the same contract (`run`):
- `ClientScripts`, the stock path: the client's public `evalsha`/`eval`;
- `LaneScripts`, the fast path. redis-py's command path (`execute_command` and the connection pool)
  takes an asyncio lock, dispatches events and records observability counters twice per command: about
  30 µs of CPU per call on a 2-core machine, more than the script itself costs Redis. `LaneScripts`
  instead keeps a few connections of the client's pool to itself and talks to them directly
  (`send_packed_command`/`read_response`, still redis-py's code for connecting, AUTH, TLS, Sentinel and
  parsing), honouring the client's retry policy. Commands are packed by hiredis (a redis-py dependency
  here), byte for byte what redis-py's own packer writes for str, int and float arguments, in a sixth of
  the time.
It saves 13-18% of a checkout or return request's server CPU (bench/api_load.py, concurrency 1).
`for_client` picks one through the "scripts" seam (seams.py): the fast path relies on redis-py internals
whose signatures have changed between releases.

Both also honour the same rules around a script (`Scripts.run`):
- flags: each script declares Redis 7's flags on its first line (`#!lua`: it may write, so Redis refuses it
  whole, before it runs, on a replica (READONLY), out of memory (OOM) or short of replicas (NOREPLICAS);
  `#!lua flags=no-writes`: it only reads, and may run on a replica). Redis before 7 cannot compile that
  line: a runner that meets such a server says so once and sends the scripts without it (Redis then
  checks at each write inside a script, as the original vmpooler's scripts always had it);
- the fence (lua/fence.lua, put in front of every script that changes state): a primary that lost a
  replica refuses the script, and the runner asks the sentinels whether a failover is under way
  (primary.py): if one is, `FailingOver` (a 503 with a retry hint); if not, the replica is dropped from
  the record and the script runs again;
- confirmation: a change the caller marks `durable` (a checkout, a return) is confirmed on its own
  connection before `run` returns it: by the replicas the fence records (WAIT), in every mode, so that a
  change in flight when a planned failover promotes a replica is never answered; `redis: durability`
  adds the AOF fsync (WAITAOF, `aof`) or requires a replica (`replica`). `NotDurable` when a required
  confirmation failed, or when the replicas did not confirm and the sentinels say a failover is under
  way;
- the deadline (lua/deadline.lua, put in front of the scripts that change state for a request): a script
  run inside a request (server_clock.ChangesUntil) carries the request's deadline, on Redis's clock, and
  does nothing when Redis reaches it after then; `Late` (a 503) then.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import cache
from hashlib import sha1
from importlib import resources
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.exceptions import NoScriptError, ResponseError

from . import primary
from .config import DURABILITY
from .keys import Keys
from .primary import FailingOver, NotDurable
from .seams import Seams, lacks, process_seams, refuses
from .server_clock import Late, ServerClock

log = logging.getLogger("vmpooler.redis")

NAMES = ("checkout", "return", "move", "add_pending", "forget", "discover", "status", "touch_token",
         "ratelimit", "undo_checkout", "unfence", "write", "login_attempt", "login_outcome",
         # the manager's
         "settle_discovered", "spare", "lease", "presence", "clone_slot", "take_tasks", "task_done",
         "index_held", "sample",
         # on-demand requests (ondemand_store.py)
         "ondemand_submit", "ondemand_delete", "ondemand_sweep", "ondemand_reserve", "ondemand_deliver",
         "ondemand_lost")

# Lua libraries put in front of the scripts that use them: Redis has no include, and a second script
# call would cost the request a second round trip.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "checkout": ("gcra", "history", "held_sets", "demand", "fence", "deadline"),
    "return": ("gcra", "history", "fence", "deadline"), "index_held": ("held_sets", "fence"),
    "write": ("fence", "deadline"), "ratelimit": ("gcra",),
    "discover": ("known", "fence"), "spare": ("known", "fence"), "unfence": ("fence",),
    **{name: ("history", "fence") for name in ("move", "add_pending", "forget")},
    **{name: ("fence",) for name in ("settle_discovered", "lease", "undo_checkout", "task_done", "sample")},
    **{name: ("managers", "fence") for name in ("presence", "clone_slot", "take_tasks")},
    **{name: ("history", "ondemand", "fence") for name in NAMES if name.startswith("ondemand_")},
    "ondemand_submit": ("history", "ondemand", "held_sets", "demand", "fence")}
# The scripts that run fence.lua's check before their first line: every one that changes the state of a
# VM, a lease or a manager's presence, and the API's plain writes (write.lua). Not status (it only
# reads), nor the bookkeeping of reads (ratelimit, touch_token), nor unfence (the fence's own way out).
FENCED = frozenset(name for name, libraries in LIBRARIES.items() if "fence" in libraries) - {"unfence"}
_FENCE = "do local refused = fenced(ARGV[1]) if refused then return refused end end"
# The scripts a request's change runs: each takes the request's deadline as ARGV[2] (put there by the
# runner) and checks it first, before the fence, so that a late one does nothing at all.
DEADLINED = frozenset(name for name, libraries in LIBRARIES.items() if "deadline" in libraries)
_LATE = "do local refused = late(ARGV[2]) if refused then return refused end end"

WAIT_MS = 1000  # how long a change may wait for the replicas or the fsync that `durability` requires
SOFT_WAIT_MS = 200  # how long it waits for the replicas it does not require (a slow one is then asked about)
_REREAD = 1.0  # seconds between readings of the fence's record of replicas
_REMEMBER_FAILOVER = 0.25  # seconds a "failover under way" verdict answers other fenced calls at once


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@cache
def source(name: str, flagged: bool = True) -> str:
    """The script as sent: its flags line first (Redis reads flags on the first line only, so the
    libraries go after it), its libraries, the fence check, then its own lines. `flagged=False`: without
    the flags line, for Redis before 7."""
    text = _read(name)
    shebang, _, body = text.partition("\n") if text.startswith("#!") else ("", "", text)
    parts = [*([shebang] if flagged and shebang else []), *(_read(library) for library in LIBRARIES.get(name, ())),
             *([_LATE] if name in DEADLINED else []), *([_FENCE] if name in FENCED else []), body]
    return "\n".join(parts)


@cache
def digest(name: str, flagged: bool = True) -> str:
    return sha1(source(name, flagged).encode()).hexdigest()


def for_client(client: aioredis.Redis, seams: Seams | None = None, durability: str = "none") -> Scripts:
    """The runner for `client`: `LaneScripts` unless the "scripts" seam takes the stock path."""
    if (seams if seams is not None else process_seams()).fast("scripts", lambda: lanes_unsupported(client)):
        return LaneScripts(client, durability=durability)
    return ClientScripts(client, durability=durability)


Durable = Callable[[Any], bool]  # does this reply show a change that `durability` must confirm?


class _Rules:
    """What both runners do around a script: flags on old servers, the fence, durability (see the module's
    docstring). A runner supplies `_once`: the script once, and the durability confirmation when asked."""

    def __init__(self, client: aioredis.Redis, durability: str) -> None:
        assert durability in DURABILITY, durability
        self._client = client
        self.durability = durability
        self._flagged = True
        self._replicas: int | None = None  # replicas a confirmation waits for; None: read again
        self._replicas_read = float("-inf")
        self._slow_logged = float("-inf")
        self._resolving: dict[str, asyncio.Future[None]] = {}
        self._failing_over: tuple[float, str] = (float("-inf"), "")
        self.clock = ServerClock(client)

    def _digest(self, name: str) -> str:
        return digest(name, self._flagged)

    def _source(self, name: str) -> str:
        return source(name, self._flagged)

    async def _once(self, name: str, args: list[Any], durable: Durable | None) -> Any:
        raise NotImplementedError

    async def _deadlined(self, name: str, args: list[Any], confirmations: list[tuple[Any, ...]]) -> list[Any]:
        """The script's arguments, with the request's deadline second when it takes one: early enough for
        the confirmations (each command's last word is its timeout, ms) to end before the request's."""
        if name not in DEADLINED:
            return args
        reserve = sum(int(command[-1]) for command in confirmations) / 1000 if confirmations else 0.0
        return [args[0], await self.clock.deadline(reserve), *args[1:]]

    async def run(self, name: str, args: list[Any], durable: Durable | None = None) -> Any:
        """The script's reply; ResponseError for an error it raised, RedisError if Redis is unreachable,
        `FailingOver` when the primary is being replaced or refuses writes (nothing done), `NotDurable` when
        `durable(reply)` and `durability` was not confirmed in time (the change is made; undoing it is the
        caller's), `Late` when Redis reached it after the request's deadline (nothing done)."""
        retried = False
        while True:
            flagged = self._flagged
            try:
                return await self._once(name, args, durable)
            except ResponseError as err:
                text = str(err)
                if flagged and "near '#'" in text and "compil" in text:
                    if self._flagged:  # once, whatever the number of calls that met it together
                        self._unflag()
                    continue
                if text.startswith("LATE "):
                    self.clock.late()
                    raise Late(text) from None
                if text.startswith("FENCED ") and not retried:
                    await self._unfence(text, args[0])
                    retried = True
                    continue
                if text.startswith(("FENCED ", "NOREPLICAS")):
                    await primary.follow(self._client)
                    # The refusal stays the cause: redis_faults explains it (and names the setting) from there.
                    raise FailingOver(f"redis refuses writes: {_refusal(text)}") from err
                raise

    def _unflag(self) -> None:
        self._flagged = False
        log.warning("redis is older than 7 (it cannot read the scripts' flags line): the scripts run without "
                    "flags, so a write refused inside a script (OOM, NOREPLICAS) may stop it partway; Redis 7 "
                    "or later refuses such a script whole")

    async def _unfence(self, refusal: str, prefix: str) -> None:
        """A script was fenced: raise `FailingOver` when a failover is under way, else drop the missing
        replicas from the record. Concurrent calls fenced alike share one look at the sentinels."""
        started, reason = self._failing_over
        if time.monotonic() - started < _REMEMBER_FAILOVER:
            raise FailingOver(reason)
        pending = self._resolving.get(refusal)
        if pending is None:
            pending = self._resolving[refusal] = asyncio.ensure_future(self._resolve(refusal, prefix))
            pending.add_done_callback(lambda done: self._done(refusal, done))
        await asyncio.shield(pending)

    def _done(self, refusal: str, done: asyncio.Future[None]) -> None:
        self._resolving.pop(refusal, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have been cancelled meanwhile

    async def _resolve(self, refusal: str, prefix: str) -> None:
        _, run_id, *missing = refusal.split()
        verdict = await primary.under_way(self._client, run_id)
        if verdict is not None:
            reason = f"the redis primary is being replaced ({verdict.reason}; it lost replica {', '.join(missing)})"
            if not verdict.replaced:  # while no new primary is named, other fenced calls are answered at once
                self._failing_over = (time.monotonic(), reason)
            await primary.follow(self._client, force=verdict.replaced)
            raise FailingOver(reason)
        dropped = await self._once("unfence", [prefix, *missing], None)
        self._replicas = None  # read the record again
        if dropped:
            log.warning("redis replica %s left the primary and no failover is under way: no longer waited for",
                        ", ".join(missing))

    # Durability ----------------------------------------------------------------------------------

    def _confirmations(self) -> list[tuple[Any, ...]]:
        """The commands that confirm a durable change on its connection (none: nothing to wait for).
        Every mode waits for the replicas the fence records, so that a replica promoted in a planned
        failover has every answered change; `replica` requires one, `aof` also waits for the fsync."""
        commands: list[tuple[Any, ...]] = []
        if self.durability == "replica":
            commands.append(("WAIT", max(1, self._replicas or 0), WAIT_MS))
        elif self._replicas:
            commands.append(("WAIT", self._replicas, SOFT_WAIT_MS))
        if self.durability == "aof":
            commands.append(("WAITAOF", 1, 0, WAIT_MS))
        return commands

    async def _wanted(self, prefix: str) -> None:
        """How many replicas a confirmation waits for: every one the fence records, read again every
        second (a replica that joins is waited for from then on) and after a fence or a failed wait."""
        if self._replicas is None or time.monotonic() - self._replicas_read > _REREAD:
            recorded = await self._client.get(Keys(prefix).replicas())
            self._replicas = len(str(recorded).split()) - 1 if recorded else 0
            # No record yet (no fenced script has run on this primary): read it again on the next call.
            self._replicas_read = time.monotonic() if recorded else float("-inf")

    def _judge(self, commands: list[tuple[Any, ...]], replies: list[Any]) -> str | None:
        """None when the confirmations hold; raises NotDurable when a required one failed; the reason
        when only the replicas that `none` and `aof` wait for (without requiring them) fell short."""
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise NotDurable(_unsupported(self.durability, str(reply)))
        short, recorded = None, self._replicas
        for command, reply in zip(commands, replies, strict=True):
            if command[0] == "WAITAOF" and int(reply[0]) < 1:
                raise NotDurable(f"redis did not write the change to its AOF within {WAIT_MS} ms (durability: aof)")
            if command[0] == "WAIT" and int(reply) < int(command[1]):
                self._replicas = None  # the record may have dropped a replica meanwhile: read it again
                short = f"{int(reply)} of {command[1]} redis replicas confirmed the change within {command[2]} ms"
                if self.durability == "replica":
                    raise NotDurable(f"{short} (durability: replica)" if recorded else  # none at all, not a slow one
                                     f"{short}: this redis has no replica (durability: replica needs one: give "
                                     "the primary a replica, or set redis.durability to none)")
        return short

    async def _unconfirmed(self, short: str, address: tuple[str, int]) -> None:
        """The replicas did not confirm a change in time, and `durability` does not require them: a slow
        replica, or the promotion of one in a planned failover, with this change in flight. Raise
        NotDurable in the second case (the change is on a primary about to be thrown away)."""
        verdict = await primary.replacing(self._client, address)
        if verdict is not None:
            raise NotDurable(f"{short}, and the primary is being replaced ({verdict.reason})")
        now = time.monotonic()
        if now - self._slow_logged > _REREAD * 60:
            self._slow_logged = now
            log.warning("%s and no failover is under way: answered without them (durability: %s)", short,
                        self.durability)


async def durability_unsupported(client: aioredis.Redis, durability: str) -> str | None:
    """Why this Redis cannot honour `durability` (None: it can), for a clear word at start rather than
    a 503 on each checkout: `aof` needs WAITAOF (Redis 7.2 or later) and the server's appendonly."""
    if durability != "aof":
        return None
    server = await client.info("server")
    version = str(server.get("redis_version", "0"))
    if tuple(int(part) for part in version.split(".")[:2] if part.isdigit()) < (7, 2):
        return f"durability: aof needs Redis 7.2 or later (WAITAOF); this Redis is {version}"
    if not int((await client.info("persistence")).get("aof_enabled", 0)):
        return "durability: aof needs the Redis server's appendonly yes (its AOF is off)"
    return None


def _refusal(text: str) -> str:
    if text.startswith("FENCED "):
        return "the primary lost a replica and the sentinels could not say why"
    return f"fewer replicas are connected than its min-replicas-to-write ({text.split(' ', 1)[0]})"


def _unsupported(durability: str, error: str) -> str:
    if "unknown command" in error.lower():
        return f"durability: {durability} needs Redis 7.2 or later (WAITAOF), and this Redis has no WAITAOF"
    if "appendonly" in error.lower():
        return f"durability: {durability} needs the Redis server's appendonly yes ({error})"
    return f"durability: {durability}: redis refused the confirmation ({error})"


class ClientScripts(_Rules):
    """Runs the scripts by EVALSHA, falling back to EVAL (which also caches the script) when Redis
    answers NOSCRIPT, as it does after a restart: redis-py's public calls, with its pool and retries."""

    def __init__(self, client: aioredis.Redis, *, durability: str = "none") -> None:
        super().__init__(client, durability)

    async def _once(self, name: str, args: list[Any], durable: Durable | None) -> Any:
        if durable is not None:
            await self._wanted(args[0])
        commands = self._confirmations() if durable is not None else []
        args = await self._deadlined(name, args, commands)
        if not commands:
            return await self._script(self._client, name, args)
        # One connection for the script and its confirmation: WAIT and WAITAOF count the writes of the
        # connection they are sent on.
        async with self._client.client() as one:
            reply = await self._script(one, name, args)
            if durable is not None and durable(reply):
                replies = []
                for command in commands:
                    try:
                        replies.append(await one.execute_command(*command))  # type: ignore[no-untyped-call]
                    except ResponseError as err:
                        replies.append(err)
                short = self._judge(commands, replies)
                if short is not None and one.connection is not None:
                    await self._unconfirmed(short, (str(one.connection.host), int(one.connection.port)))
            return reply

    async def _script(self, client: aioredis.Redis, name: str, args: list[Any]) -> Any:
        try:
            return await client.evalsha(self._digest(name), 0, *args)
        except NoScriptError:
            return await client.eval(self._source(name), 0, *args)


class LaneScripts(_Rules):
    """Runs the scripts by EVALSHA, falling back to EVAL (which also caches the script) when Redis
    answers NOSCRIPT, as it does after a restart.

    Connections are taken from the client's pool as concurrency needs them, at most `lanes` of them
    (half the pool by default, so other commands always find one), and kept: they stay members of the
    pool, so closing the client closes them too, and a closed one reconnects on its next use. A call
    that is cancelled or fails mid-command disconnects its connection, whose replies would otherwise be
    out of step with its commands."""

    def __init__(self, client: aioredis.Redis, lanes: int | None = None, *, durability: str = "none") -> None:
        super().__init__(client, durability)
        self._pool = client.connection_pool
        self._lanes = lanes if lanes is not None else max(1, int(self._pool.max_connections) // 2)
        self._idle: list[AbstractConnection] = []
        self._taken = 0  # connections taken from the pool so far, idle or busy
        self._waiting: deque[asyncio.Future[AbstractConnection | None]] = deque()
        from hiredis import pack_command  # here: the stock path does without hiredis

        self._pack = pack_command

    async def _once(self, name: str, args: list[Any], durable: Durable | None) -> Any:
        if durable is not None:
            await self._wanted(args[0])
        commands = self._confirmations() if durable is not None else []
        args = await self._deadlined(name, args, commands)
        command = self._pack(("EVALSHA", self._digest(name), 0, *args))
        conn = self._idle.pop() if self._idle else await self._acquire()
        short, address = None, ("", 0)
        try:
            reply = await conn.retry.call_with_retry(lambda: self._call(conn, command, name, args),
                                                     lambda error: conn.disconnect(nowait=True))
            if commands and durable is not None and durable(reply):
                # On the script's connection (WAIT and WAITAOF count the writes of their connection), and
                # not retried: a broken connection leaves the change unconfirmed.
                await conn.send_packed_command(b"".join(self._pack(command) for command in commands))
                replies = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as err:
                        replies.append(err)
                short = self._judge(commands, replies)
                address = (str(getattr(conn, "host", "")), int(getattr(conn, "port", 0) or 0))
        except (ResponseError, NotDurable):
            raise  # Redis answered: the connection is in step
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            self._release(conn)
        if short is not None:
            await self._unconfirmed(short, address)
        return reply

    async def _call(self, conn: AbstractConnection, command: bytes, name: str, args: list[Any]) -> Any:
        if not conn.is_connected:
            await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_packed_command(command)
        try:
            return await conn.read_response()
        except NoScriptError:
            await conn.send_packed_command(self._pack(("EVAL", self._source(name), 0, *args)))
            return await conn.read_response()

    async def _acquire(self) -> AbstractConnection:
        while True:
            if self._taken < self._lanes:
                self._taken += 1
                try:
                    conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                except BaseException:
                    self._taken -= 1
                    self._wake()  # the lane is free again: a waiting call may have better luck with it
                    raise
                return conn
            waiter: asyncio.Future[AbstractConnection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                # A cancelled waiter stays queued; _release and _wake skip it. One that was handed a
                # connection or a free lane just as it was cancelled passes it on.
                if waiter.done() and not waiter.cancelled():
                    if (late := waiter.result()) is not None:
                        self._release(late)
                    else:
                        self._wake()
                raise
            if handed is not None:
                return handed
            # None: woken because a lane became free; take it (or wait again if another call did).

    def _next_waiter(self) -> asyncio.Future[AbstractConnection | None] | None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                return waiter
        return None

    def _release(self, conn: AbstractConnection) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(conn)
        else:
            self._idle.append(conn)

    def _wake(self) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(None)


Scripts = ClientScripts | LaneScripts

# A command with every kind of argument the scripts are given, and its RESP encoding as redis-py writes it.
_SAMPLE: tuple[Any, ...] = ("EVALSHA", "ab", 0, -3, 1.5, "\u00e9")
_SAMPLE_RESP = b"*6\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$2\r\n-3\r\n$3\r\n1.5\r\n$2\r\n\xc3\xa9\r\n"


def lanes_unsupported(client: aioredis.Redis) -> str | None:
    """Why `LaneScripts` cannot run on `client` with the installed redis-py and hiredis (None: it can):
    each pool and connection call it makes, as it makes it."""
    if importlib.util.find_spec("hiredis") is None:
        return "hiredis is not installed"
    from hiredis import pack_command

    if (packed := pack_command(_SAMPLE)) != _SAMPLE_RESP:
        return f"hiredis.pack_command{_SAMPLE} gives {packed!r}, not what redis-py sends"
    pool = client.connection_pool
    connection: type = pool.connection_class  # (typed as redis-py says; checked here)
    if not issubclass(connection, AbstractConnection):
        return f"the pool's connections are {connection.__qualname__}s, not redis-py's AbstractConnection"
    if "retry" not in inspect.signature(AbstractConnection).parameters:
        return "redis-py's AbstractConnection takes no retry policy"

    async def do() -> None: ...

    def fail(error: Exception) -> None: ...

    return (lacks(pool, "max_connections") or refuses(pool, "get_connection")
            or lacks(connection, "is_connected") or refuses(connection, "connect")
            or refuses(connection, "send_packed_command", b"") or refuses(connection, "read_response")
            or refuses(connection, "disconnect", nowait=True) or refuses(Retry, "call_with_retry", do, fail))
