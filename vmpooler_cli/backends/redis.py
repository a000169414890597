"""Direct on Redis, through the same core code the API server runs (no Redis command is written here).

Pools and aliases come from the vmpooler config file; checkout is the core's one atomic Lua step, so a
checkout from here and one through any number of API servers can never hand out the same VM.
Who may change, return or queue work on a VM, and who may list or delete a token, is the core's one
policy (vmpooler_core/access.py), the same the API server applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from vmpooler_core import config_loader, vms
from vmpooler_core.access import Access
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config, RedisSettings
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest
from vmpooler_core.status import status

from ..errors import CliError, Unreachable
from ..exit_codes import ExitCode
from .base import Allocated, PoolRow, rows_from_status

T = TypeVar("T")


def load_config(source: str | None, env: Mapping[str, str]) -> Config:
    """The vmpooler config named by --config/VMPOOLER_CONFIG: a path or, like the daemon accepts in
    VMPOOLER_CONFIG, a whole YAML document. The daemon's environment overrides apply here too."""
    if not source:
        raise CliError("the Redis backend needs the vmpooler config for its pools and aliases: "
                       "pass --config FILE or set VMPOOLER_CONFIG", ExitCode.USAGE)
    found = config_loader.resolve_source(None, {"VMPOOLER_CONFIG": source})
    assert found is not None  # a non-empty VMPOOLER_CONFIG always names a source
    name, text = found
    return config_loader.load(text=text, env=env, source=name)


class RedisBackend:
    needs_password = False

    def __init__(self, url: str, config: Config, *, token: str | None = None, timeout: float = 30.0,
                 connect_timeout: float = 3.0) -> None:
        self.config = config
        self.token = token
        settings = RedisSettings(url=url, socket_timeout=timeout)
        self.where = settings.describe()
        # One event loop for the whole run: the client's connections belong to it.
        self._runner = asyncio.Runner()
        self._client = connect(settings, max_connections=4, connect_timeout=connect_timeout)
        self.inventory = Inventory(self._client, data_ttl_hours=config.redis.data_ttl,
                                   durability=config.redis.durability)
        self._checkout = Checkout(config, self.inventory, NullMetrics())
        self.access = Access(config, self.inventory)

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        from redis import exceptions

        try:
            return self._runner.run(work)
        except exceptions.AuthenticationError as err:
            raise CliError(f"Redis at {self.where} refused the credentials: {err}", ExitCode.UNAUTHORIZED) from err
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as err:
            raise Unreachable(f"cannot reach Redis at {self.where}: {err or type(err).__name__}") from err
        except exceptions.ResponseError as err:
            raise CliError(f"Redis at {self.where} answered with an error: {err}") from err

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        except Exception:  # closing a client to a dead server must not mask the real error
            pass
        self._runner.close()

    def _host(self, host: str) -> str:
        return vms.shorten(host, self.config.app.domain)

    # Pools ---------------------------------------------------------------------------------------

    def checkout(self, counts: Sequence[tuple[str, int]]) -> Allocated:
        allocation = self._run(self._checkout.take(CheckoutRequest(tuple(counts)), token=self.token))
        pairs = tuple((pool, host) for pool, hosts in allocation.by_pool().items() for host in hosts)
        return Allocated(pairs, self.config.app.domain)

    def give_back(self, host: str) -> None:
        self._run(self._checkout.give_back(self._host(host), self.token))

    def status(self) -> dict[str, Any]:
        return self._run(status(self.config, self.inventory))

    def pools(self) -> list[PoolRow]:
        return rows_from_status(self.status()["pools"])

    def names(self) -> list[str]:
        # From the config alone: completion must not wait on Redis.
        return sorted(self.config.pool_names)

    # One VM --------------------------------------------------------------------------------------

    def show(self, host: str) -> tuple[str, dict[str, Any]]:
        short = self._host(host)
        return short, self._run(vms.describe(self.config, self.inventory, short))

    def modify(self, host: str, change: Mapping[str, Any]) -> None:
        async def work() -> None:
            short = self._host(host)
            data, _ = await vms.load(self.inventory, short)  # unknown VM first, as the API answers 404 first
            await vms.modify(self.inventory, short, await self.access.modification(data, change, self.token))

        self._run(work())

    def _task(self, host: str, work: Callable[[str, dict[str, str]], Awaitable[T]]) -> T:
        """Queued work (snapshot, revert, disk) on a VM the policy lets this token work on."""
        async def run() -> T:
            short = self._host(host)
            return await work(short, await self.access.vm_for_work(short, self.token))

        return self._run(run())

    def snapshot(self, host: str) -> str:
        return self._task(host, lambda short, _: vms.request_snapshot(self.inventory, short))

    def revert(self, host: str, snapshot: str) -> None:
        self._task(host, lambda short, data: vms.request_revert(self.inventory, short, data, snapshot))

    def disk(self, host: str, size: int) -> str:
        return self._task(host, lambda short, _: vms.request_disk(self.inventory, short, str(size)))

    # Tokens: written directly; whoever can write to this Redis needs no password -----------------

    def token_create(self, user: str, password: str | None) -> str:
        return self._run(self.access.create_token(user))

    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]:
        return self._run(self.access.tokens_of(user))

    def token_delete(self, token: str, user: str, password: str | None) -> None:
        self._run(self.access.revoke(token, user))
