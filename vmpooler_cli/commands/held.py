"""`vmpooler mine`: the VMs your token holds, as vmfloaty's `list --active` shows them; and the same list
for `return --all`.

Over the API it is `GET /token/<token>` (no credentials: the token in the path is the secret, as the
original's clients read it) and then each VM's `GET /vm/<host>`.
"""

from __future__ import annotations

from typing import Any

import click

from ..context import Run, json_option
from ..errors import CliError
from ..exit_codes import ExitCode
from ..shapes import epilog
from .vms import vm_json


def held_hosts(run: Run) -> list[str]:
    """The hosts checked out with this run's token (and not yet returned)."""
    token = run.settings().token
    if not token:
        raise CliError("this lists the VMs of your token: pass --token or set VMPOOLER_TOKEN", ExitCode.USAGE)
    return run.backend().token_vms(token)


def _left(vm: dict[str, Any]) -> str:
    if vm["remaining"] is None:
        return "-" if vm["lifetime"] is None else f"{vm['lifetime']} h lifetime"
    return f"{vm['remaining']} h of {vm['lifetime']}"


@click.command(epilog=epilog("mine"), short_help="List the VMs your token holds.")
@json_option
@click.pass_obj
def mine(run: Run, as_json: bool) -> None:
    """List the VMs checked out with your token: each one's pool, the hours of its lifetime left, and
    its tags (vmfloaty's `list --active`).

    \b
    Examples:
      vmpooler --token abcdefghijklmnopqrstuvwxyz012345 mine
      vmpooler mine --json
    """
    from vmpooler_core.errors import NotFound

    out = run.output(as_json)
    backend = run.backend()
    vms: list[dict[str, Any]] = []
    with out.waiting("Reading your VMs…"):
        for host in held_hosts(run):
            try:
                short, doc = backend.show(host)
            except NotFound:  # returned and destroyed between the two answers
                continue
            vms.append(vm_json(short, doc))
    if out.json:
        out.emit_json({"vms": vms})
    elif not vms:
        out.note("your token holds no VMs")
    else:
        out.table(("host", "pool", "left", "tags"),
                  [[vm["fqdn"], vm["template"], _left(vm), ", ".join(f"{k}={v}" for k, v in vm["tags"].items())]
                   for vm in vms])
