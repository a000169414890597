"""Run the manager alone: `python -m vmpoolerd.manager --config vmpooler.yaml [--id ID]`.

A small entry point for operations and for the tests that kill a manager process; the daemon
(`vmpoolerd`) runs the same `Manager.run_forever` next to the API. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from vmpooler_core import config_loader, metrics
from vmpooler_core.errors import ConfigError

from ..providers import build_providers, close_providers
from .manager import Manager, manager_redis


async def _run(config_path: str, manager_id: str | None) -> None:
    config = config_loader.load(config_path)
    client = manager_redis(config)
    sink = metrics.from_settings(config.metrics)
    providers = build_providers(config, client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Manager(config, client, providers, sink, manager_id=manager_id).run_forever(stop)
    finally:
        close_providers(providers)
        sink.close()
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmpoolerd.manager", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the vmpooler YAML file")
    parser.add_argument("--id", dest="manager_id", help="a stable manager id (unique among live managers)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_run(args.config, args.manager_id))
    except ConfigError as err:
        print(f"vmpooler manager: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
