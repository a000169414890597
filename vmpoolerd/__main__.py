"""`vmpoolerd [all|api|manager] --config FILE [--bind ADDR] [--port N] [--log-level L] [--manager-id ID]
[--debug] [--check] [--forget-vanished POOL]`.

main() is four steps, each replaceable on its own: parse the command line, find the configuration
(and start what it needs), set up logging, run the roles. Expected failures are one line on stderr and
a named exit code (exit_codes.py); a traceback is shown only with --debug.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from redis.exceptions import RedisError

from vmpooler_core import config_loader, health
from vmpooler_core.config import Config
from vmpooler_core.errors import ConfigError
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.redis_client import connect

from . import cli_args, confirm, daemon, embedded, logs
from .exit_codes import ExitCode

PROVIDER_THREADS = "vmpooler-provider"  # the name prefix of the manager's provider threads (manager/runner.py)


def _error(message: str) -> None:
    print(f"vmpoolerd: error: {message}", file=sys.stderr)


@contextmanager
def configuration(args: cli_args.Arguments, env: Mapping[str, str]) -> Iterator[Config]:
    """The configuration to run with, for as long as the daemon runs: --config, else
    $VMPOOLER_CONFIG_FILE / $VMPOOLER_CONFIG, else the embedded defaults: the demo pools on the dummy
    provider, with a Redis-compatible server of our own started here and stopped when we are done."""
    if config_loader.resolve_source(args.config, env) is not None:
        yield config_loader.load(args.config, env=env)
        return
    server = embedded.EmbeddedRedis(embedded.state_dir(env))
    config = config_loader.load(text=embedded.demo_config_text(server.url), env=env,
                                source="<embedded demo configuration>")
    server.start(api_url(args, config))  # or AlreadyRunning, when another daemon owns the state directory
    try:
        print(f"vmpoolerd: no configuration given: running the demo pools on an embedded Redis "
              f"(data in {server.dir}); pass --config FILE for a real deployment", file=sys.stderr)
        yield config
    finally:
        server.stop()


def listen_address(args: cli_args.Arguments, config: Config) -> daemon.Listen:
    return daemon.Listen(args.bind or config.app.bind, config.app.port if args.port is None else args.port)


def api_url(args: cli_args.Arguments, config: Config) -> str:
    """Where this daemon's API will answer, for the message that refuses a second daemon."""
    if args.role == "manager":
        return embedded.NO_API
    where = listen_address(args, config)
    host = f"[{where.host}]" if ":" in where.host else where.host
    return f"http://{host}:{where.port}"


def serve(args: cli_args.Arguments, config: Config) -> ExitCode:
    logs.configure(args.log_level or config.app.log_level, config.app.logfile)
    where = listen_address(args, config)
    try:
        daemon.run(args.role, config, where, args.manager_id)
    except daemon.RoleUnavailable as err:
        _error(str(err))
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


def check(args: cli_args.Arguments, env: Mapping[str, str]) -> ExitCode:
    """`vmpoolerd --check`: the /healthcheck verdict, read straight from Redis, as an exit code for a
    probe. With no configuration it checks the embedded server of this user's demo pooler."""
    if config_loader.resolve_source(args.config, env) is not None:
        config = config_loader.load(args.config, env=env)
    else:
        socket_url = embedded.EmbeddedRedis(embedded.state_dir(env)).url
        config = config_loader.load(text=embedded.demo_config_text(socket_url), env=env)

    async def verdict() -> dict[str, object]:
        client = connect(config.redis, max_connections=2)
        try:
            return await health.check(config, Inventory(client, Keys(), config.redis.data_ttl))
        finally:
            await client.aclose()

    result = asyncio.run(verdict())
    print(json.dumps(result))
    return ExitCode.OK if result["ok"] else ExitCode.ERROR


_IDLE_WORKERS_END = 0.5  # seconds the provider pool's idle workers are given to end after the stop


def exit_past_provider_calls(code: int) -> int:
    """`code`, or an exit right now when provider calls are still running after the stop (a clone that
    takes minutes outlived the manager's grace). The manager has left them to the provider, but Python
    joins every worker thread before it exits, which would hold the daemon past any supervisor's stop
    timeout, to be killed there: so leave now, with the logs flushed, and exit `code`."""
    # Idle workers of the provider's thread pool end a moment after its shutdown: they are not calls.
    until = time.monotonic() + _IDLE_WORKERS_END
    for thread in [t for t in threading.enumerate() if t.name.startswith(PROVIDER_THREADS)]:
        thread.join(max(0.0, until - time.monotonic()))
    stuck = [t for t in threading.enumerate() if t.name.startswith(PROVIDER_THREADS) and t.is_alive()]
    if not stuck:
        return code
    logging.getLogger("vmpooler.daemon").warning("exiting with %d provider call(s) still running, left to "
                                                 "the provider", len(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli_args.parse(argv)
    if args.forget_vanished is not None:
        try:
            print(confirm.forget_vanished(config_loader.load(args.config, env=os.environ), args.forget_vanished))
            return ExitCode.OK
        except ConfigError as err:
            _error(str(err))
            return ExitCode.CONFIG
        except LookupError as err:
            _error(str(err.args[0]))
            return ExitCode.USAGE
        except (RedisError, OSError) as err:
            _error(f"redis: {err}")
            return ExitCode.UNAVAILABLE
    if args.check:
        try:
            return check(args, os.environ)
        except ConfigError as err:
            _error(str(err))
            return ExitCode.CONFIG
    try:
        with configuration(args, os.environ) as config:
            code = serve(args, config)
        return exit_past_provider_calls(code)
    except embedded.AlreadyRunning as err:
        print(err, file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except ConfigError as err:
        if args.debug:
            raise
        _error(str(err))
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        _error(f"{type(err).__name__}: {err} (run with --debug for the traceback)")
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
