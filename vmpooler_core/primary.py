"""Following the Redis primary of a Sentinel group: no connection stays with a former primary.

redis-py's Sentinel pools find the primary when a connection is made, and drop idle connections when
they notice it moved; but connections in use keep talking to the old one until it breaks, and the
script lanes (scripts.py) keep theirs in use for good. After a `SENTINEL FAILOVER` the old primary
accepts writes for some 10 s more, until Sentinel turns it into a replica and throws them away. Here:
- `Sentinels` (asyncio) and `BlockingSentinels` ask every sentinel and believe the one with the newest
  configuration (the highest config epoch), not the first that answers: a sentinel that has not yet
  heard of a failover still names the old primary for up to a couple of seconds. `Sentinels` also
  names a replica that a failover in progress has already promoted (Sentinel announces the switch only
  after reconfiguring the other replicas, seconds later with several);
- `FollowingPool` and `BlockingFollowingPool` subscribe to `+switch-master` on every sentinel and drop
  every connection, in use or not, as soon as one announces that the primary moved (reconnecting
  asks the sentinels again). Both act once per configuration (config epoch), and a connection made
  from an answer older than the last move asks again;
- `Sentinels.failover_under_way` answers the scripts' fence (lua/fence.lua): a primary that lost a
  replica is either being replaced (answer 503 and follow) or merely lost a replica (carry on).
A READONLY answer (the old primary turned into a replica) makes redis-py drop that connection and
reconnect through the sentinels; the pools here then drop every other connection too, as for an
announcement (the announcement may have been missed: a sentinel unreachable, or a subscription refused by
its ACL).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis import asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFound
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection
from redis.sentinel import MasterNotFoundError
from redis.sentinel import SentinelConnectionPool as BlockingSentinelConnectionPool
from redis.sentinel import SentinelManagedConnection as BlockingManagedConnection
from redis.sentinel import SentinelManagedSSLConnection as BlockingManagedSSLConnection

from .errors import BackendUnavailable

log = logging.getLogger("vmpooler.redis")

SWITCH = "+switch-master"  # Sentinel's announcement: "<name> <old ip> <old port> <new ip> <new port>"
RETRY_AFTER = 1  # seconds: a failover ends within about a second of the promotion
ASK_TIMEOUT = 1.0  # seconds for the sentinels' answers when a fence asks them
_RESUBSCRIBE = 1.0  # seconds between attempts to subscribe again to a sentinel that went away


class FailingOver(BackendUnavailable, redis.exceptions.ConnectionError):
    """The primary is being replaced, or refuses writes (NOREPLICAS): nothing was done; retry shortly.
    Also a redis ConnectionError, so the manager backs off from it as from any Redis outage."""

    retry_after = RETRY_AFTER


class NotDurable(BackendUnavailable):
    """`durability` was not met in time (no replica or no fsync confirmed the change): the change was
    undone where it could be, and the client is told to retry."""

    retry_after = RETRY_AFTER


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a fenced primary is being replaced; `replaced`: the sentinels already name another one."""

    reason: str
    replaced: bool


def _best(states: list[Any], service_name: str, check: Callable[[dict[str, Any], str], bool]) -> Any:
    """The healthy primary state with the newest configuration, or None."""
    valid = [state for state in states if isinstance(state, dict) and check(state, service_name)]
    return max(valid, key=lambda state: int(state.get("config-epoch", 0)), default=None)


def _not_found(service_name: str, errors: list[str]) -> str:
    # The wording of redis-py's own MasterNotFoundError, which redis_faults reads.
    return f"No master found for {service_name!r}" + (f" : {', '.join(errors)}" if errors else "")


class Sentinels(aioredis.Sentinel):
    """redis-py's asyncio Sentinel, asking every sentinel at once and believing the newest configuration."""

    async def _masters(self) -> tuple[list[tuple[aioredis.Redis, Any]], list[str]]:
        """(sentinel, its SENTINEL MASTERS) of each sentinel that answered, and the others' errors."""
        answers = await asyncio.gather(*(sentinel.sentinel_masters() for sentinel in self.sentinels),
                                       return_exceptions=True)
        states, errors = [], []
        for sentinel, answer in zip(self.sentinels, answers, strict=True):
            if isinstance(answer, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                errors.append(f"{sentinel} - {answer!r}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                states.append((sentinel, answer))
        return states, errors

    async def discover(self, service_name: str) -> tuple[tuple[str, int], int]:
        """The primary's address and the config epoch of the configuration that names it. During a
        failover whose replica is already promoted, that replica (with the next epoch): Sentinel
        announces the switch only once it has reconfigured the other replicas too, seconds later with
        several of them, while the former primary is fenced."""
        states, errors = await self._masters()
        best = _best([state.get(service_name) for _, state in states], service_name, self.check_master_state)
        if best is None:
            raise AsyncMasterNotFound(_not_found(service_name, errors))
        address, epoch = (best["ip"], int(best["port"])), int(best.get("config-epoch", 0))
        promoted = await self._promoted(service_name, states, address)
        return (promoted, epoch + 1) if promoted is not None else (address, epoch)

    async def _promoted(self, service_name: str, states: list[tuple[aioredis.Redis, Any]],
                        address: tuple[str, int]) -> tuple[str, int] | None:
        """The replica promoted by a failover in progress, once Sentinel has seen it answer as a primary
        (SENTINEL GET-MASTER-ADDR-BY-NAME names it from then on), else None."""
        for sentinel, state in states:
            if "failover_in_progress" not in str((state.get(service_name) or {}).get("flags", "")):
                continue
            try:
                named: Any = await sentinel.sentinel_get_master_addr_by_name(service_name)
            except redis.exceptions.RedisError:
                continue
            if named:
                host = named[0].decode() if isinstance(named[0], bytes) else str(named[0])
                if (host, int(named[1])) != address:
                    return host, int(named[1])
        return None

    async def discover_master(self, service_name: str) -> Any:
        return (await self.discover(service_name))[0]

    async def failover_under_way(self, service_name: str, run_id: str) -> Verdict | None:
        """Whether the primary whose run id is `run_id` is being replaced: a sentinel reports a failover in
        progress, or the newest configuration names another primary (`replaced`). None when the sentinels
        that answer agree it is the primary and no failover is under way. No answer counts as under way:
        a replica that left cannot be told from one being promoted without them."""
        return await self._verdict(service_name, lambda state: state.get("runid") == run_id)

    async def replacing(self, service_name: str, address: tuple[str, int]) -> Verdict | None:
        """`failover_under_way` for the primary at `address` (a connection's, when its run id is unknown).
        The replica a failover in progress has promoted is not being replaced: it is the new primary."""
        def at(where: tuple[str, int]) -> bool:
            return (str(where[0]), int(where[1])) == (address[0], int(address[1]))

        return await self._verdict(service_name, lambda state: at((str(state.get("ip")), int(state.get("port", 0)))),
                                   at)

    async def _verdict(self, service_name: str, ours: Callable[[dict[str, Any]], bool],
                       promoted_ours: Callable[[tuple[str, int]], bool] = lambda address: False) -> Verdict | None:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                states, _ = await self._masters()
        except (TimeoutError, redis.exceptions.RedisError) as err:
            return Verdict(f"the sentinels did not answer ({type(err).__name__})", False)
        mine = [state[service_name] for _, state in states if service_name in state]
        if not mine:
            return Verdict("no sentinel answered", False)
        best = max(mine, key=lambda state: int(state.get("config-epoch", 0)))
        promoted = None
        if any("failover_in_progress" in str(state.get("flags", "")) for state in mine):
            try:
                async with asyncio.timeout(ASK_TIMEOUT):
                    promoted = await self._promoted(service_name, states, (best["ip"], int(best["port"])))
            except TimeoutError:
                promoted = None
            if promoted is not None and promoted_ours(promoted):
                return None
        if not ours(best):
            return Verdict(f"the sentinels name another primary, {best.get('ip')}:{best.get('port')}", True)
        if promoted is not None:
            return Verdict(f"a failover promoted {promoted[0]}:{promoted[1]}", True)
        if any("failover_in_progress" in str(state.get("flags", "")) for state in mine):
            return Verdict("a sentinel reports a failover in progress", False)
        return None


class BlockingSentinels(redis.Sentinel):
    """The blocking twin of `Sentinels` (for the providers' threads): the newest configuration wins."""

    def discover(self, service_name: str) -> tuple[tuple[str, int], int]:
        """The primary's address and the config epoch of the configuration that names it."""
        states, errors = [], []
        for sentinel in self.sentinels:
            try:
                masters: Any = sentinel.sentinel_masters()
                states.append(masters.get(service_name))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
                errors.append(f"{sentinel} - {err!r}")
        best = _best(states, service_name, self.check_master_state)
        if best is None:
            raise MasterNotFoundError(_not_found(service_name, errors))
        return (best["ip"], int(best["port"])), int(best.get("config-epoch", 0))

    def discover_master(self, service_name: str) -> Any:
        return self.discover(service_name)[0]


def _announced(message: Any, service_name: str) -> tuple[str, int] | None:
    """The new primary's address when `message` is a `+switch-master` of `service_name`."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    data = message.get("data")
    words = (data.decode() if isinstance(data, bytes) else str(data)).split()
    if len(words) != 5 or words[0] != service_name:
        return None
    return words[3], int(words[4])


def _demoted(err: BaseException) -> bool:
    """Whether `err` is how redis-py's Sentinel connections answer READONLY from what they took for the
    primary: a ConnectionError raised while handling the ReadOnlyError (that connection is dropped)."""
    return isinstance(err, redis.exceptions.ConnectionError) and isinstance(err.__context__,
                                                                          redis.exceptions.ReadOnlyError)


class _FollowingConnection(SentinelManagedConnection):
    """A connection of `FollowingPool` that tells its pool when the primary it talks to was demoted."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except redis.exceptions.ConnectionError as err:
            if _demoted(err):
                self.connection_pool.demoted()
            raise


class _FollowingSSLConnection(_FollowingConnection, SentinelManagedSSLConnection):
    pass


class FollowingPool(SentinelConnectionPool):
    """redis-py's asyncio Sentinel pool that also listens to the sentinels and drops every connection,
    in use or idle, as soon as one announces a new primary. The listener starts with the first
    connection asked for (it needs a running loop) and stops when the pool is closed.

    Each move is acted on once per configuration (config epoch); a connection made from an answer older
    than the last move acted on asks again, so a discovery that raced with the move cannot bring a
    connection back to the former primary."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs.setdefault("connection_class", _FollowingSSLConnection if ssl else _FollowingConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._listener: asyncio.Task[None] | None = None
        self._epoch = -1  # the config epoch of the last move acted on
        self._following: asyncio.Task[None] | None = None

    def demoted(self) -> None:
        """A connection met READONLY: the primary it knew was demoted. Every other connection goes too,
        at once (one look at the sentinels at a time)."""
        if self._following is None or self._following.done():
            self._following = asyncio.get_running_loop().create_task(self.follow(force=True),
                                                                      name="follow the demoted primary")

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="sentinel listener")
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def get_master_address(self) -> Any:
        if not isinstance(self.sentinel_manager, Sentinels):
            return await super().get_master_address()  # type: ignore[no-untyped-call]
        for _ in range(3):
            address, epoch = await self.sentinel_manager.discover(self.service_name)
            if epoch >= self._epoch:
                break
        if self.master_address != address:  # as redis-py's: idle connections to the former primary go
            self.master_address = address
            await super().disconnect(inuse_connections=False)
        return address

    async def _listen(self) -> None:
        await asyncio.gather(*(self._watch(sentinel) for sentinel in self.sentinel_manager.sentinels))

    async def _watch(self, sentinel: aioredis.Redis) -> None:
        failing = False
        while True:
            try:
                async with sentinel.pubsub() as pubsub:
                    await pubsub.subscribe(SWITCH)
                    failing = False
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                        if _announced(message, self.service_name) is not None:
                            await self.follow()
            except (redis.exceptions.RedisError, OSError) as err:
                if not failing:  # once per outage of this sentinel; the fence still guards the writes
                    log.warning("cannot listen to sentinel %s for %s (%s); retrying every %.0f s",
                                _sentinel_at(sentinel), SWITCH, err, _RESUBSCRIBE)
                    failing = True
                await asyncio.sleep(_RESUBSCRIBE)

    async def follow(self, force: bool = False) -> None:
        """Ask the sentinels now; drop every connection when their configuration is newer than the last
        one acted on, or when `force` (a connection was found on a former primary)."""
        if not isinstance(self.sentinel_manager, Sentinels):
            return
        try:
            address, epoch = await self.sentinel_manager.discover(self.service_name)
        except redis.exceptions.RedisError:
            return
        if epoch <= self._epoch and not force:
            return
        self._epoch = max(self._epoch, epoch)
        old, self.master_address = self.master_address, None
        await SentinelConnectionPool.disconnect(self, inuse_connections=True)
        if force or (old is not None and tuple(old) != address):
            log.warning("redis primary of %s is %s (config epoch %d; it was %s): every connection dropped",
                        self.service_name, _where(address), epoch, _where(old))

    async def aclose(self) -> None:
        self._stop()
        await super().aclose()

    async def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections:  # the client is closing (redis-py itself drops idle connections only)
            self._stop()
        await super().disconnect(inuse_connections)

    def _stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None


class _BlockingFollowingConnection(BlockingManagedConnection):
    """The blocking twin of `_FollowingConnection` (its pool is reached through redis-py's pool proxy)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ConnectionError as err:
            pool = getattr(self.connection_pool, "connection_pool_ref", lambda: None)()
            if _demoted(err) and isinstance(pool, BlockingFollowingPool):
                pool.follow(force=True)
            raise


class _BlockingFollowingSSLConnection(_BlockingFollowingConnection, BlockingManagedSSLConnection):
    pass


class BlockingFollowingPool(BlockingSentinelConnectionPool):
    """The blocking twin of `FollowingPool`: a daemon thread per sentinel listens, started with the
    first connection asked for and stopped when the pool is closed."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs.setdefault("connection_class", _BlockingFollowingSSLConnection if ssl else _BlockingFollowingConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._epoch = -1  # the config epoch of the last move acted on

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._threads:
            with self._start_lock:
                if not self._threads:
                    self._stopping.clear()
                    self._threads = [threading.Thread(target=self._watch, args=(sentinel,), daemon=True,
                                                      name="sentinel listener")
                                     for sentinel in self.sentinel_manager.sentinels]
                    for thread in self._threads:
                        thread.start()
        return super().get_connection(*args, **kwargs)

    def _watch(self, sentinel: redis.Redis) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                with sentinel.pubsub() as pubsub:  # type: ignore[no-untyped-call]
                    pubsub.subscribe(SWITCH)
                    failing = False
                    while not self._stopping.is_set():
                        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if _announced(message, self.service_name) is not None:
                            self.follow()
            except (redis.exceptions.RedisError, OSError) as err:
                if not failing:
                    log.warning("cannot listen to sentinel %s for %s (%s); retrying every %.0f s",
                                _sentinel_at(sentinel), SWITCH, err, _RESUBSCRIBE)
                    failing = True
                self._stopping.wait(_RESUBSCRIBE)

    def get_master_address(self) -> Any:
        if not isinstance(self.sentinel_manager, BlockingSentinels):
            return super().get_master_address()  # type: ignore[no-untyped-call]
        for _ in range(3):  # an answer older than the last move acted on: ask again
            address, epoch = self.sentinel_manager.discover(self.service_name)
            if epoch >= self._epoch:
                break
        if self.proxy.master_address != address:  # as redis-py's: idle connections to the former primary go
            self.proxy.master_address = address
            BlockingSentinelConnectionPool.disconnect(self, inuse_connections=False)
        return address

    def follow(self, force: bool = False) -> None:
        """Ask the sentinels now; drop every connection when their configuration is newer than the last
        one acted on (each move once, whichever sentinel announced it first), or when `force` (a
        connection met READONLY)."""
        if not isinstance(self.sentinel_manager, BlockingSentinels):
            return
        try:
            address, epoch = self.sentinel_manager.discover(self.service_name)
        except redis.exceptions.RedisError:
            return
        with self._start_lock:
            if epoch <= self._epoch and not force:
                return
            self._epoch = max(self._epoch, epoch)
            old, self.proxy.master_address = self.proxy.master_address, None
        BlockingSentinelConnectionPool.disconnect(self, inuse_connections=True)
        if old is not None and tuple(old) != address:
            log.warning("redis primary of %s is %s (config epoch %d; it was %s): every connection of the "
                        "blocking client dropped", self.service_name, _where(address), epoch, _where(old))

    def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections:
            self._stop()
        super().disconnect(inuse_connections)

    def _stop(self) -> None:
        self._stopping.set()
        self._threads = []


def _where(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if address else "(not yet known)"


async def under_way(client: aioredis.Redis, run_id: str) -> Verdict | None:
    """`Sentinels.failover_under_way` for a client of a Sentinel group; None for any other client (no
    one replaces its primary behind its back, so a replica that left is just gone)."""
    pool = client.connection_pool
    if not isinstance(pool, FollowingPool):
        return None
    manager = pool.sentinel_manager
    return await manager.failover_under_way(pool.service_name, run_id) if isinstance(manager, Sentinels) else None


async def replacing(client: aioredis.Redis, address: tuple[str, int]) -> Verdict | None:
    """`Sentinels.replacing` for a client of a Sentinel group; None for any other client."""
    pool = client.connection_pool
    if not isinstance(pool, FollowingPool):
        return None
    manager = pool.sentinel_manager
    return await manager.replacing(pool.service_name, address) if isinstance(manager, Sentinels) else None


def follow_blocking(client: redis.Redis) -> None:
    """`follow` for the blocking client (never forced: it cannot tell a failover from a replica that left,
    and leaves that to the asyncio clients' fence, see blocking_writes.py)."""
    pool = client.connection_pool
    if isinstance(pool, BlockingFollowingPool):
        pool.follow()


async def follow(client: aioredis.Redis, force: bool = False) -> None:
    """Move `client` to the primary the sentinels name now, if it is another, or at once when `force` (one
    of its connections is known to be on a former primary). A no-op without Sentinel."""
    pool = client.connection_pool
    if isinstance(pool, FollowingPool):
        await pool.follow(force)


def _sentinel_at(sentinel: Any) -> str:
    """A sentinel's address for the log (its client's repr is a screenful that names no problem)."""
    kwargs = getattr(getattr(sentinel, "connection_pool", None), "connection_kwargs", {})
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
