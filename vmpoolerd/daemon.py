"""Running the roles: the HTTP API (uvicorn) and the pool manager, together in one event loop or alone.

The API listens on a socket bound here, so a busy port is one clear error instead of a server that
starts and exits. uvicorn's httptools parser and uvloop are used when installed (they roughly halve
the CPU per request).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from vmpooler_core.config import Config
from vmpooler_core.metrics import Metrics, from_settings

from . import http_limits, logs
from .api import create_app
from .api.app import preflight
from .prometheus import Registry, Tee

log = logging.getLogger("vmpooler.daemon")
RoleRunner = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

# How long a stop may take. The API finishes its requests in flight (each has a deadline of a few
# seconds; uvicorn gives up on them after API_STOP_GRACE), then the manager gives running clones, destroys
# and tasks MANAGER_STOP_GRACE to finish and be recorded (clones are what runs long: a vSphere clone takes
# minutes); what still runs after that is left to the provider, its pending entry kept for the next
# manager's reconciliation. Together they stay below the stop timeouts of examples/ (supervisord's
# stopwaitsecs, systemd's TimeoutStopSec: 30 s), so that a stop is an exit 0, not a SIGKILL.
API_STOP_GRACE = 10
MANAGER_STOP_GRACE = 15.0


class RoleUnavailable(Exception):
    """A role cannot start here (its port is taken)."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def listen_socket(where: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where.host, where.port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise RoleUnavailable(f"cannot listen on {where.host}:{where.port}: {err.strerror}") from None
    sock.setblocking(False)
    return sock


def manager_runner(config: Config, metrics: Metrics, manager_id: str | None = None) -> RoleRunner:
    """The pool manager as a role, with its own Redis client so its work never queues behind API
    requests (and the API's client keeps its own retry policy). Imported here, not at the top, so
    `vmpoolerd api` does not load the manager and its providers. `manager_id`: see `Manager`."""
    from vmpoolerd.manager.manager import Manager, manager_redis
    from vmpoolerd.providers import build_providers, close_providers

    async def run(stop: asyncio.Event) -> None:
        redis = manager_redis(config)
        providers = build_providers(config)
        try:
            manager = Manager(config, redis, providers, metrics, manager_id=manager_id,
                              stop_grace=MANAGER_STOP_GRACE)
            await manager.run_forever(stop)
        finally:
            await asyncio.to_thread(close_providers, providers)  # a vCenter logout may block
            await redis.aclose()

    return run


def api_runner(config: Config, where: Listen, metrics: Metrics, prometheus: Registry | None = None) -> RoleRunner:
    sock = listen_socket(where)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config, metrics=metrics, prometheus=prometheus), loop="none", lifespan="on", log_config=None,
        # httptools, with limits on the request head, on the time to send a request, and on connections.
        http=http_limits.protocol(config.http), timeout_keep_alive=config.http.keep_alive_timeout, access_log=False,
        # No proxy-header rewriting: one less middleware per request (the rate limiter, the one user of
        # client addresses, reads a proxy's header itself when told to: rate_limits.address_header).
        proxy_headers=False, server_header=False, timeout_graceful_shutdown=API_STOP_GRACE))

    async def run(stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(_exit_when(stop, server))
        host, port = sock.getsockname()[:2]
        try:
            log.info("API listening on http://%s:%s", host, port)
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits this way when its start-up fails
            raise RoleUnavailable(f"the API did not start (uvicorn exit {exc.code})") from None
        finally:
            watcher.cancel()
            sock.close()

    return run


async def _exit_when(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True


def _on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT stop every role. (uvicorn takes these over while it serves and hands each one
    back to this handler when it has shut down, so the manager stops after the API.)"""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    # SIGHUP reopens the log file (logrotate); the daemon carries on.
    signal.signal(signal.SIGHUP, lambda signum, frame: loop.call_soon_threadsafe(logs.reopen))


async def serve(role: str, config: Config, where: Listen, manager_id: str | None = None) -> None:
    """Run `role` ("all", "api" or "manager") until a signal, or until one role fails."""
    prometheus = Registry()
    # statsd or graphite as configured, and Prometheus's counters and histograms, from the same calls.
    metrics = Tee(from_settings(config.metrics), prometheus)
    stop = asyncio.Event()
    try:
        # Before any role starts: a Redis that cannot honour `durability` is refused before anything is
        # written to it (the manager would otherwise have started filling the pools).
        await preflight(config)
        runners: dict[str, RoleRunner] = {}
        if role in ("all", "api"):
            runners["api"] = api_runner(config, where, metrics, prometheus)
        if role in ("all", "manager"):
            runners["manager"] = manager_runner(config, metrics, manager_id)
        _on_signals(stop)
        tasks = [asyncio.create_task(run(stop), name=name) for name, run in runners.items()]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # when one role ends, for whatever reason, the others stop too
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        metrics.close()


def run(role: str, config: Config, where: Listen, manager_id: str | None = None) -> None:
    loop_factory = None
    if _has("uvloop"):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(role, config, where, manager_id))
