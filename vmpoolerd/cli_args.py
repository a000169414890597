"""The `vmpoolerd` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import vmpooler_core

ROLES = ("all", "api", "manager")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class Arguments:
    role: str
    config: str | None
    bind: str | None
    port: int | None
    log_level: str | None
    debug: bool
    check: bool = False
    manager_id: str | None = None
    forget_vanished: str | None = None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _manager_id(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"a manager id is one word: {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmpoolerd",
        description="Keep pools of ready VMs and hand them out over HTTP (API v1 of the original vmpooler).")
    p.add_argument("role", nargs="?", choices=ROLES, default="all",
                   help="run the API and the pool manager in one process (all, the default), or one of them")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="configuration file (default: $VMPOOLER_CONFIG_FILE, or $VMPOOLER_CONFIG)")
    p.add_argument("--bind", metavar="ADDR", help="address to listen on (default: config `bind`, 127.0.0.1)")
    p.add_argument("--port", type=_port, metavar="N", help="port to listen on (default: config `port`, 4567)")
    p.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                   help="log level (default: config `log_level`, INFO)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("--manager-id", type=_manager_id, metavar="ID",
                   help="the pool manager's id, unique among live managers (default: host:pid:random); with a "
                        "stable id a restarted manager takes its pools back at once, not after their leases "
                        "expire")
    p.add_argument("--check", action="store_true",
                   help="do not serve: exit 0 if Redis answers and a manager's heartbeat is fresh, else 1")
    p.add_argument("--forget-vanished", metavar="POOL",
                   help="do not serve: confirm that the VMs which vanished from POOL all at once (health says "
                        "so) are gone for good; the manager forgets them on its next pass")
    p.add_argument("--version", action="version", version=f"vmpoolerd {vmpooler_core.__version__}")
    return p


def parse(argv: Sequence[str] | None = None) -> Arguments:
    p = parser()
    ns = p.parse_args(argv)
    if ns.manager_id is not None and ns.role == "api":
        p.error("--manager-id: the api role runs no manager")
    return Arguments(role=ns.role, config=ns.config, bind=ns.bind, port=ns.port, log_level=ns.log_level,
                     debug=ns.debug, check=ns.check, manager_id=ns.manager_id,
                     forget_vanished=ns.forget_vanished)
