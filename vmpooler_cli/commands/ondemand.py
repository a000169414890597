"""On-demand VMs: `vmpooler checkout --ondemand POOL...` and `vmpooler request ID`.

A request asks the server's managers to clone the VMs (API v3 /ondemandvm) rather than take ready ones:
the command submits it, says its id on stderr, and waits, with a progress line on a terminal, until the
VMs are ready, then prints their hostnames as `checkout` does. Ctrl-C stops the waiting, not the request:
`vmpooler request ID` waits for it again, or `--cancel`s it (its VMs are given back).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from ..context import Run, json_option
from ..errors import CliError
from ..exit_codes import ExitCode
from ..shapes import epilog

if TYPE_CHECKING:  # imported on use: `vmpooler --help` does not pay for the HTTP client
    from ..backends.ondemand_api import Progress

# Seconds between two looks at the request: quick at first (a small request is ready in seconds), then
# every few seconds (a big one takes minutes, and the server has other clients).
POLLS = (0.2, 0.3, 0.5, 1.0, 2.0)
PATIENCE = 3.0


def _progress_line(request_id: str, found: Progress) -> str:
    parts = ", ".join(f"{alias} {ready}/{ready + pending}" for alias, (ready, pending) in found.counts.items())
    return f"request {request_id}: {found.ready} of {found.total} VMs ready ({parts})"


@contextlib.contextmanager
def _display(env_no_color: bool) -> Iterator[Callable[[str], object]]:
    """A progress line on stderr when a person watches it (else nothing): yields `show(text)`."""
    if not sys.stderr.isatty():
        yield lambda text: None
        return
    from rich.console import Console

    with Console(stderr=True, no_color=env_no_color).status("", spinner="dots") as status:
        yield status.update


@contextlib.contextmanager
def _goes_on(request_id: str) -> Iterator[None]:
    """Ctrl-C inside: the request goes on, and its id is said (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"vmpooler: stopped waiting; request {request_id} goes on: `vmpooler request {request_id}` "
                   "waits for it again", err=True)
        raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None


def wait(run: Run, request_id: str) -> Progress:
    """Poll the request until it is ready; its last Progress. Ctrl-C: see `_goes_on`."""
    from ..backends.ondemand_api import for_backend

    with _goes_on(request_id):
        api = for_backend(run.backend())
        delay = iter(POLLS)
        with _display(bool(run.env.get("NO_COLOR"))) as show:
            while True:
                found = api.status(request_id)
                if found.state != "pending":
                    return found
                show(_progress_line(request_id, found))
                time.sleep(next(delay, PATIENCE))


def _finish(run: Run, found: Progress, as_json: bool) -> None:
    if found.state == "deleted":
        raise CliError(f"request {found.request_id} was deleted", ExitCode.NOT_FOUND)
    if found.state == "failed":
        raise CliError(f"request {found.request_id} failed: {found.message}", ExitCode.NO_CAPACITY)
    out = run.output(as_json)
    if out.json:
        out.emit_json({"ok": True, "request_id": found.request_id, "domain": None,
                       "vms": [{"pool": alias, "hostname": fqdn.split(".", 1)[0], "fqdn": fqdn}
                               for alias, fqdn in found.vms]})
        return
    for _, fqdn in found.vms:
        out.line(fqdn)


def checkout(run: Run, counts: list[tuple[str, int]], as_json: bool) -> None:
    """`checkout --ondemand`: submit, say the id, wait, print."""
    from ..backends.ondemand_api import for_backend

    api = for_backend(run.backend())
    request_id = api.submit(counts)
    total = sum(n for _, n in counts)
    # From the moment its id is said, a Ctrl-C says how to wait for the request again.
    with _goes_on(request_id):
        click.echo(f"vmpooler: request {request_id}: {total} VM(s) being cloned; Ctrl-C stops waiting, not the "
                   "request", err=True)
        found = wait(run, request_id)
    _finish(run, found, as_json)


@click.command(epilog=epilog("request"), short_help="Wait for an on-demand request (or cancel it).")
@click.argument("request_id", metavar="ID")
@click.option("--cancel", is_flag=True, help="Delete the request instead: its VMs are given back.")
@json_option
@click.pass_obj
def request(run: Run, request_id: str, cancel: bool, as_json: bool) -> None:
    """Wait for an on-demand request (`checkout --ondemand`) until its VMs are ready, and print their
    hostnames; at once when it is ready already. Exit 3 when it was deleted, 4 when it failed.

    \b
    Examples:
      vmpooler request 0b5e8a9c-4f0e-4bb4-9a43-0f1d6f6a3c2e
      vmpooler request 0b5e8a9c-4f0e-4bb4-9a43-0f1d6f6a3c2e --cancel
    """
    if cancel:
        from ..backends.ondemand_api import for_backend

        deleted = for_backend(run.backend()).delete(request_id)
        out = run.output(as_json)
        if out.json:
            out.emit_json({"ok": True, "request_id": request_id, "deleted": deleted})
        else:
            out.line(f"request {request_id} {'deleted' if deleted else 'was deleted before'}")
        return
    _finish(run, wait(run, request_id), as_json)
