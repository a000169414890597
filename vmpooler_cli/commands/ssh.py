"""`vmpooler ssh HOST|POOL`: ssh to a VM, checking one out first when given a pool or alias (vmfloaty's
`ssh`). Runs the `ssh` found on PATH, as a child, and exits with its exit code."""

from __future__ import annotations

import click

from ..completion import complete_pools
from ..context import Run
from ..errors import CliError
from ..exit_codes import ExitCode
from ..shapes import epilog
from .vms import vm_json


def _target(run: Run, name: str) -> str:
    """The FQDN to reach: a new VM's from the pool or alias `name`, else the VM named `name`'s."""
    backend = run.backend()
    out = run.output()
    if name in backend.names():
        with out.waiting(f"Checking out a VM of {name}…"):
            got = backend.checkout([(name, 1)])
        pool, host = got.vms[0]
        fqdn = got.fqdn(host)
        out.note(f"checked out {fqdn} ({pool}); give it back with: vmpooler return {fqdn}")
        return fqdn
    with out.waiting(f"Looking up {name}…"):
        short, doc = backend.show(name)
    return str(vm_json(short, doc)["fqdn"])


# ignore_unknown_options and no interspersed options: everything after HOST|POOL is ssh's.
@click.command(short_help="ssh to a VM (checks one out when given a pool).", epilog=epilog("ssh"),
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-l", "--login", default="root", show_default=True, help="The user to log in as.")
@click.argument("name", metavar="HOST|POOL", shell_complete=complete_pools)
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED, metavar="[SSH ARGS]...")
@click.pass_context
def ssh(ctx: click.Context, login: str, name: str, ssh_args: tuple[str, ...]) -> None:
    """ssh to a VM by its FQDN. Given a pool or alias, check out one of its VMs first (and say which, so
    you can return it); anything after HOST|POOL is passed to ssh.

    \b
    Examples:
      vmpooler ssh centos-6-64                  # a new VM, as root
      vmpooler ssh -l admin abcdefghijklmno uptime
    """
    import shutil
    import subprocess

    binary = shutil.which("ssh")
    if binary is None:
        raise CliError("no ssh on PATH: install OpenSSH's client", ExitCode.ERROR)
    run: Run = ctx.obj
    fqdn = _target(run, name)
    run.close()  # nothing more to ask the server while ssh runs
    ctx.exit(subprocess.call([binary, f"{login}@{fqdn}", *ssh_args]))
