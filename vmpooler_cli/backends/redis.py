"""Direct on Redis, through the same core code the API server runs (no Redis command is written here).

Pools and aliases come from the vmpooler config file; checkout is the core's one atomic Lua step, so a
checkout from here and one through any number of API servers can never hand out the same VM.
The API's rules apply here too (vmpoolerd/api/access.py): with `auth:` configured, queued work and
lifetime changes need a valid token, a VM checked out with a token is changed or returned only with
that token, and a token is listed or deleted only by its owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from vmpooler_core import config_loader, tokens, vms
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config, RedisSettings
from vmpooler_core.errors import NotFound
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest
from vmpooler_core.status import status

from ..errors import CliError, Unreachable
from ..exit_codes import ExitCode
from .base import Allocated, PoolRow, rows_from_status

T = TypeVar("T")

AUTH_OFF = "authentication is not configured (the vmpooler config has no auth: section)"


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
        self.inventory = Inventory(self._client, data_ttl_hours=config.redis.data_ttl)
        self._checkout = Checkout(config, self.inventory, NullMetrics())

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

    async def _vm(self, host: str) -> tuple[str, dict[str, str]]:
        short = self._host(host)
        data, _ = await vms.load(self.inventory, short)
        return short, data

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
            short, data = await self._vm(host)  # unknown VM first, as the API answers 404 first
            auth = self.config.auth_enabled
            has_token = False
            if "lifetime" in change and auth and self.token:
                has_token = bool(await tokens.use(self.inventory, self.token))
            parsed = vms.parse_modification(change, self.config, has_token)
            if parsed.lifetime is not None and auth:
                vms.require_owner(data, self.token)
            await vms.modify(self.inventory, short, parsed)

        self._run(work())

    def _task(self, host: str, work: Callable[[str, dict[str, str]], Awaitable[T]]) -> T:
        """Queued work (snapshot, revert, disk), checked as the API checks it: with auth configured a
        valid token first (before the VM's existence is revealed), then the VM, then its owner."""
        async def run() -> T:
            if self.config.auth_enabled:
                await tokens.use(self.inventory, self.token)
            short, data = await self._vm(host)
            if self.config.auth_enabled:
                vms.require_owner(data, self.token)
            return await work(short, data)

        return self._run(run())

    def snapshot(self, host: str) -> str:
        return self._task(host, lambda short, _: vms.request_snapshot(self.inventory, short))

    def revert(self, host: str, snapshot: str) -> None:
        self._task(host, lambda short, data: vms.request_revert(self.inventory, short, data, snapshot))

    def disk(self, host: str, size: int) -> str:
        return self._task(host, lambda short, _: vms.request_disk(self.inventory, short, str(size)))

    # Tokens: written directly; whoever can write to this Redis needs no password -----------------

    def _need_auth(self) -> None:
        if not self.config.auth_enabled:
            raise NotFound(AUTH_OFF)

    def token_create(self, user: str, password: str | None) -> str:
        self._need_auth()
        return self._run(self.inventory.create_token(user))

    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]:
        self._need_auth()
        mine = self._run(tokens.of_user(self.inventory, user))
        if not mine:
            raise NotFound(f"{user} has no tokens")
        return mine

    def token_delete(self, token: str, user: str, password: str | None) -> None:
        self._need_auth()
        self._run(tokens.revoke(self.inventory, token, user))
