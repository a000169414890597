"""Direct on Redis, through the same core code the API server runs (no Redis command is written here).

Pools and aliases come from the vmpooler config file; checkout is the core's one atomic Lua step, so a
checkout from here and one through any number of API servers can never hand out the same VM.
Who may change, return or queue work on a VM, and who may list or delete a token, is the core's one
policy (vmpooler_core/access.py), the same the API server applies. The core writes the same audit lines
and VM history as for the API's requests, the client named `cli:<local user>`; the lines go to the
vmpooler config's `logfile` when it names one this user may append to (else nowhere: the command's
output is its own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import logging
import os
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from vmpooler_core import config_loader, summary, vms
from vmpooler_core.access import Access
from vmpooler_core.audit import FORMAT, Caller, new_request_id
from vmpooler_core.audit import log as audit_log
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config, RedisSettings
from vmpooler_core.inventory import Inventory
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect
from vmpooler_core.request import CheckoutRequest
from vmpooler_core.status import status

from ..errors import CliError, Unreachable
from ..exit_codes import ExitCode
from ..settings import Settings
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


def redis_settings(settings: Settings, config: Config) -> RedisSettings:
    """Where Redis is: the --redis URL (a single server), else the config's `redis:` section (what the
    daemon uses: Sentinel, an ACL user, TLS, a unix socket). Either way the CLI's --timeout bounds a call."""
    if settings.redis_url is not None:
        if urlsplit(settings.redis_url).password:
            return RedisSettings(url=settings.redis_url, socket_timeout=settings.timeout)
        # The URL says where; the config still says how to log in when the URL does not, so a password
        # need not be typed on a command line. (A user named in the URL wins over the config's.)
        return RedisSettings(url=settings.redis_url, username=config.redis.username,
                             password=config.redis.password, socket_timeout=settings.timeout)
    if not settings.redis_from_config:
        raise CliError("the Redis backend needs a Redis: pass --redis URL, or --redis-from-config to use the "
                       "config's `redis:` settings", ExitCode.USAGE)
    return dataclasses.replace(config.redis, socket_timeout=settings.timeout)


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment and no passwd entry (a bare container)
        return "unknown"


class AuditFile:
    """This run's audit lines, appended to the daemon's log file when the config names one that exists
    and this user may write (a config copied to a workstation creates no file there)."""

    def __init__(self, logfile: str | None) -> None:
        self.handler: logging.Handler | None = None
        self.level = audit_log.level
        if not logfile or not os.path.isfile(logfile) or not os.access(logfile, os.W_OK):
            return
        try:
            self.handler = logging.FileHandler(logfile)
        except OSError:
            return
        self.handler.setFormatter(logging.Formatter(FORMAT))
        audit_log.addHandler(self.handler)
        if audit_log.getEffectiveLevel() > logging.INFO:
            audit_log.setLevel(logging.INFO)

    def close(self) -> None:
        if self.handler is not None:
            audit_log.removeHandler(self.handler)
            audit_log.setLevel(self.level)
            self.handler.close()
            self.handler = None


class RedisBackend:
    needs_password = False

    def __init__(self, redis: RedisSettings, config: Config, *, token: str | None = None,
                 connect_timeout: float = 3.0, url_setting: str = "redis.url") -> None:
        self.config = config
        self.token = token
        self.redis = redis
        self.where = redis.describe()
        self._url_setting = url_setting  # how messages name the url
        # One event loop for the whole run: the client's connections belong to it.
        self._runner = asyncio.Runner()
        self._client = connect(redis, max_connections=4, connect_timeout=connect_timeout)
        self.inventory = Inventory(self._client, data_ttl_hours=config.redis.data_ttl,
                                   durability=config.redis.durability)
        self._checkout = Checkout(config, self.inventory, NullMetrics())
        self.access = Access(config, self.inventory)
        self._client_name = f"cli:{local_user()}"
        self._audit = AuditFile(config.app.logfile)

    def _caller(self) -> Caller:
        """Each operation is a request of its own, with its own id."""
        return Caller(self._client_name, new_request_id())

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        from redis import exceptions

        from vmpooler_core import redis_faults

        try:
            return self._runner.run(work)
        except (exceptions.RedisError, OSError) as err:
            fault = redis_faults.explain(err, self.redis, url_setting=self._url_setting)
            if fault is None:
                if isinstance(err, OSError):
                    raise Unreachable(f"cannot reach Redis at {self.where}: {err or type(err).__name__}") from err
                raise CliError(f"Redis at {self.where} answered with an error: {err}") from err
            if fault.kind == "unreachable":
                # A Sentinel error holds the repr of every sentinel client (kilobytes): its reason says it.
                said = fault.reason if self.redis.sentinels else str(err) or type(err).__name__
                raise Unreachable(f"cannot reach Redis at {self.where}: {said}") from err
            if fault.credentials:
                raise CliError(f"Redis at {self.where}: {fault.reason}", ExitCode.UNAUTHORIZED) from err
            raise Unreachable(f"Redis at {self.where}: {fault.reason}") from err

    def describe(self) -> str:
        return f"Redis at {self.where}, directly (no API)"

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        except Exception:  # closing a client to a dead server must not mask the real error
            pass
        self._runner.close()
        self._audit.close()

    def _host(self, host: str) -> str:
        return vms.shorten(host, self.config.app.domain)

    # Pools ---------------------------------------------------------------------------------------

    def checkout(self, counts: Sequence[tuple[str, int]]) -> Allocated:
        allocation = self._run(self._checkout.take(CheckoutRequest(tuple(counts)), token=self.token,
                                                   caller=self._caller()))
        pairs = tuple((pool, host) for pool, hosts in allocation.by_pool().items() for host in hosts)
        return Allocated(pairs, self.config.app.domain)

    def give_back(self, host: str) -> None:
        self._run(self._checkout.give_back(self._host(host), self.token, caller=self._caller()))

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
            await self.access.change(short, data, change, self.token, self._caller())

        self._run(work())

    # Queued work on a VM the policy lets this token work on.

    def snapshot(self, host: str) -> str:
        return self._run(self.access.snapshot(self._host(host), self.token, self._caller()))

    def revert(self, host: str, snapshot: str) -> None:
        self._run(self.access.revert(self._host(host), snapshot, self.token, self._caller()))

    def disk(self, host: str, size: int) -> str:
        return self._run(self.access.disk(self._host(host), str(size), self.token, self._caller()))

    # Tokens: written directly; whoever can write to this Redis needs no password -----------------

    def token_create(self, user: str, password: str | None) -> str:
        return self._run(self.access.create_token(user, self._caller()))

    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]:
        return self._run(self.access.tokens_of(user))

    def token_delete(self, token: str, user: str, password: str | None) -> None:
        self._run(self.access.revoke(token, user, self._caller()))

    def require_tokens(self) -> None:
        self.access.require_tokens()

    def token_vms(self, token: str) -> list[str]:
        return [str(host) for host in self._run(self.access.token(token))["vms"]["running"]]

    def summary(self, first: str | None, last: str | None) -> dict[str, Any]:
        start, end = summary.date_range(first, last)
        return self._run(summary.summary(self.inventory, start, end))
