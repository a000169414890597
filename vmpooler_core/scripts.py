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
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from collections import deque
from functools import cache
from hashlib import sha1
from importlib import resources
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.exceptions import NoScriptError, ResponseError

from .seams import Seams, lacks, process_seams, refuses

NAMES = ("checkout", "return", "move", "add_pending", "forget", "discover", "status", "touch_token",
         "ratelimit",
         # the manager's
         "settle_discovered", "spare", "lease", "presence")

# Lua libraries put in front of the scripts that use them: Redis has no include, and a second script
# call would cost the request a second round trip.
LIBRARIES: dict[str, tuple[str, ...]] = {"checkout": ("gcra", "history"), "return": ("gcra", "history"),
                                         "ratelimit": ("gcra",), "move": ("history",), "forget": ("history",),
                                         "add_pending": ("history",), "discover": ("known",),
                                         "spare": ("known",)}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@cache
def source(name: str) -> str:
    return "\n".join([*(_read(library) for library in LIBRARIES.get(name, ())), _read(name)])


@cache
def digest(name: str) -> str:
    return sha1(source(name).encode()).hexdigest()


def for_client(client: aioredis.Redis, seams: Seams | None = None) -> Scripts:
    """The runner for `client`: `LaneScripts` unless the "scripts" seam takes the stock path."""
    if (seams if seams is not None else process_seams()).fast("scripts", lambda: lanes_unsupported(client)):
        return LaneScripts(client)
    return ClientScripts(client)


class ClientScripts:
    """Runs the scripts by EVALSHA, falling back to EVAL (which also caches the script) when Redis
    answers NOSCRIPT, as it does after a restart: redis-py's public calls, with its pool and retries."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._digests = {name: digest(name) for name in NAMES}

    async def run(self, name: str, args: list[Any]) -> Any:
        """The script's reply; ResponseError for an error it raised, RedisError if Redis is unreachable."""
        try:
            return await self._client.evalsha(self._digests[name], 0, *args)
        except NoScriptError:
            return await self._client.eval(source(name), 0, *args)


class LaneScripts:
    """Runs the scripts by EVALSHA, falling back to EVAL (which also caches the script) when Redis
    answers NOSCRIPT, as it does after a restart.

    Connections are taken from the client's pool as concurrency needs them, at most `lanes` of them
    (half the pool by default, so other commands always find one), and kept: they stay members of the
    pool, so closing the client closes them too, and a closed one reconnects on its next use. A call
    that is cancelled or fails mid-command disconnects its connection, whose replies would otherwise be
    out of step with its commands."""

    def __init__(self, client: aioredis.Redis, lanes: int | None = None) -> None:
        self._pool = client.connection_pool
        self._lanes = lanes if lanes is not None else max(1, int(self._pool.max_connections) // 2)
        self._idle: list[AbstractConnection] = []
        self._taken = 0  # connections taken from the pool so far, idle or busy
        self._waiting: deque[asyncio.Future[AbstractConnection | None]] = deque()
        self._digests = {name: digest(name) for name in NAMES}
        from hiredis import pack_command  # here: the stock path does without hiredis

        self._pack = pack_command

    async def run(self, name: str, args: list[Any]) -> Any:
        """The script's reply; ResponseError for an error it raised, RedisError if Redis is unreachable."""
        command = self._pack(("EVALSHA", self._digests[name], 0, *args))
        conn = self._idle.pop() if self._idle else await self._acquire()
        try:
            return await conn.retry.call_with_retry(lambda: self._call(conn, command, name, args),
                                                    lambda error: conn.disconnect(nowait=True))
        except ResponseError:
            raise  # Redis answered: the connection is in step
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            self._release(conn)

    async def _call(self, conn: AbstractConnection, command: bytes, name: str, args: list[Any]) -> Any:
        if not conn.is_connected:
            await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_packed_command(command)
        try:
            return await conn.read_response()
        except NoScriptError:
            await conn.send_packed_command(self._pack(("EVAL", source(name), 0, *args)))
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
