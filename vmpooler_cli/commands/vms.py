"""Commands on VMs: checkout, return (alias delete), show, lifetime, tag, snapshot, revert, disk.

Their `--json` shapes are documented in vmpooler_cli/shapes.py and shown by each `--help`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from ..backends.base import as_int
from ..completion import complete_pools
from ..context import Run, json_option
from ..errors import CliError
from ..exit_codes import ExitCode
from ..shapes import epilog


def checkout_counts(names: tuple[str, ...], count: int) -> list[tuple[str, int]]:
    """`a+a+b`, `a=2` (vmfloaty's form) and plain names, merged in the order given, each times `count`."""
    from vmpooler_core.request import from_path

    merged: dict[str, int] = {}
    for arg in names:
        name, eq, number = arg.partition("=")
        times = 1
        if eq:
            if "+" in name or not number.isdigit() or int(number) < 1:
                raise CliError(f"{arg!r}: expected NAME=COUNT, a count of at least 1 (or NAME+NAME...)",
                               ExitCode.USAGE)
            times = int(number)
        for pool, n in from_path(name).counts:
            merged[pool] = merged.get(pool, 0) + n * times
    return [(pool, n * count) for pool, n in merged.items()]


@click.command(epilog=epilog("checkout"))
@click.argument("names", nargs=-1, required=True, metavar="NAME[+NAME...|=COUNT]...", shell_complete=complete_pools)
@click.option("-n", "--count", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many VMs of each named pool.")
@click.option("--ondemand", is_flag=True,
              help="Have the VMs cloned for you (an on-demand request, API only) and wait until they are ready; "
                   "Ctrl-C stops waiting, not the request (see `vmpooler request`).")
@json_option
@click.pass_obj
def checkout(run: Run, names: tuple[str, ...], count: int, ondemand: bool, as_json: bool) -> None:
    """Check out VMs from pools or aliases, and print their hostnames.

    All or nothing: when any pool is short of ready VMs, nothing is checked out (exit 4); an
    unknown name checks nothing out (exit 3). Hostnames are printed as FQDNs when a domain is known:
    on a terminal each with its pool; piped, one hostname a line (for scripts: `ssh $(vmpooler checkout x)`).

    \b
    Examples:
      vmpooler checkout centos-6-64
      vmpooler checkout centos-6-64=2 debian-7                # two centos, one debian (vmfloaty's form)
      vmpooler checkout centos-6-64+centos-6-64 debian-7      # the same
      vmpooler checkout debian-7 -n 3 --json
      vmpooler checkout --ondemand centos-7 -n 4              # cloned for you
    """
    counts = checkout_counts(names, count)
    if ondemand:
        from . import ondemand as on_demand

        return on_demand.checkout(run, counts, as_json)
    out = run.output(as_json)
    with out.waiting(f"Checking out {sum(n for _, n in counts)} VM(s)…"):
        got = run.backend().checkout(counts)
    if out.json:
        out.emit_json({"ok": True, "domain": got.domain,
                       "vms": [{"pool": pool, "hostname": host, "fqdn": got.fqdn(host)} for pool, host in got.vms]})
        return
    if not out.terminal:
        for _, host in got.vms:
            out.line(got.fqdn(host))
        return
    width = max(len(got.fqdn(host)) for _, host in got.vms)
    for pool, host in got.vms:
        out.line(f"{got.fqdn(host).ljust(width)}  ({pool})")


@click.command("return", epilog=epilog("return"), short_help="Return checked-out VMs (alias: delete).")
@click.argument("hosts", nargs=-1, metavar="HOST...")
@click.option("--all", "every", is_flag=True, help="Every VM your token holds (asks first).")
@click.option("--yes", "-y", is_flag=True, help="With --all: do not ask.")
@json_option
@click.pass_context
def return_(ctx: click.Context, hosts: tuple[str, ...], every: bool, yes: bool, as_json: bool) -> None:
    """Return checked-out VMs (they are destroyed and replaced). Alias: delete.

    Every host is tried; the exit code is the first failure's. With --all, the VMs your token holds
    (see `mine`), after a question that --yes answers.

    \b
    Examples:
      vmpooler return abcdefghijklmno
      vmpooler delete vm1.example.com vm2.example.com
      vmpooler return --all --yes
    """
    from ..errors import classify
    from ..render import error_line
    from .held import held_hosts

    run: Run = ctx.obj
    if every == bool(hosts):
        raise CliError("name the VMs to return, or give --all (not both)", ExitCode.USAGE)
    out = run.output(as_json)
    backend = run.backend()
    if every:
        hosts = tuple(held_hosts(run))
        if hosts and not yes:
            _confirm(f"Return {len(hosts)} VM(s): {', '.join(hosts)}?")
        if not hosts:
            out.note("your token holds no VMs: nothing to return")
    results: list[dict[str, Any]] = []
    failure: ExitCode | None = None
    for host in hosts:
        try:
            with out.waiting(f"Returning {host}…"):
                backend.give_back(host)
        except Exception as err:
            code, message = classify(err)
            if code in (ExitCode.UNREACHABLE, ExitCode.ERROR):
                raise  # the server is gone or confused: the other hosts would only fail the same way
            error_line(f"{host}: {message}")
            results.append({"hostname": host, "ok": False, "error": message})
            failure = failure or code
            continue
        results.append({"hostname": host, "ok": True})
        if not out.json:
            out.line(f"{host} returned")
    if out.json:
        out.emit_json({"ok": failure is None, "vms": results})
    if failure is not None:
        ctx.exit(failure)


def _confirm(question: str) -> None:
    """Ask on the terminal; a "no", or no answer at all (no terminal), returns nothing."""
    try:
        if click.confirm(question, default=False, err=True):
            return
    except click.Abort as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise
        click.echo(err=True)  # end the question's line: the error is a line of its own
        raise CliError("no answer to the question: pass --yes to return them without asking", ExitCode.USAGE) from None
    raise CliError("not confirmed: nothing was returned")


def _hours(value: Any) -> float | None:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return None


def vm_json(short: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The server's VM document in the CLI's stable shape: every key always present."""
    found_domain, found_tags = doc.get("domain"), doc.get("tags")
    domain = found_domain if isinstance(found_domain, str) else None
    tags: dict[str, Any] = found_tags if isinstance(found_tags, dict) else {}
    running = _hours(doc.get("running"))
    life = as_int(doc.get("lifetime"))
    return {
        "hostname": short,
        "fqdn": f"{short}.{domain}" if domain else short,
        "domain": domain,
        "template": str(doc.get("template", "")),
        "state": str(doc.get("state", "")),
        "lifetime": life,
        "running": running,
        "remaining": round(max(0.0, life - running), 2) if life is not None and running is not None else None,
        "tags": {str(k): str(v) for k, v in tags.items()},
        "snapshots": [str(s) for s in doc.get("snapshots") or []],
        "disk": [str(d) for d in doc.get("disk") or []],
        "ip": str(doc.get("ip") or ""),
    }


def history_json(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """The VM's history as the server sent it (none from a server that keeps none), entries of strings."""
    found = doc.get("history")
    entries = found if isinstance(found, list) else []
    return [{str(k): str(v) for k, v in entry.items()} for entry in entries if isinstance(entry, dict)]


@click.command(epilog=epilog("show"), short_help="Show one VM's details and history.")
@click.argument("host")
@click.option("--history", "with_history", is_flag=True,
              help='Add the VM\'s history to the JSON output ("history": [{"at", "event", ...}]).')
@json_option
@click.pass_obj
def show(run: Run, host: str, with_history: bool, as_json: bool) -> None:
    """Show one VM: template, state, lifetime, running time, tags, snapshots, disks, and its history
    (who checked it out and returned it, from where, and what the manager did with it).

    \b
    Example:
      vmpooler show abcdefghijklmno
    """
    out = run.output(as_json)
    with out.waiting(f"Looking up {host}…"):
        short, doc = run.backend().show(host)
    vm = vm_json(short, doc)
    history = history_json(doc)
    if out.json:
        out.emit_json({**vm, "history": history} if with_history else vm)
        return
    running = "-" if vm["running"] is None else f"{vm['running']} h"
    if vm["remaining"] is not None:
        running += f" ({vm['remaining']} h left)"
    out.fields([
        ("template", vm["template"]),
        ("state", vm["state"]),
        ("lifetime", "-" if vm["lifetime"] is None else f"{vm['lifetime']} h"),
        ("running", running),
        ("tags", ", ".join(f"{k}={v}" for k, v in vm["tags"].items()) or "-"),
        ("snapshots", ", ".join(vm["snapshots"]) or "-"),
        ("disks", ", ".join(vm["disk"]) or "-"),
        ("ip", vm["ip"] or "-"),
    ], title=vm["fqdn"])
    if history:
        out.history(history)


def _done(run: Run, as_json: bool, text: str, doc: dict[str, Any]) -> None:
    out = run.output(as_json)
    if out.json:
        out.emit_json({"ok": True, **doc})
    else:
        out.line(text)


def _lifetime_hours(text: str) -> int:
    """HOURS as typed: a whole number of at least 1. (The upper bound is the server's
    `max_lifetime_upper_limit`, which it names when it refuses a value.)"""
    try:
        hours = int(text)
    except ValueError:
        raise CliError(f"HOURS must be a whole number of hours, not {text!r}", ExitCode.USAGE) from None
    if hours < 0:
        raise CliError(f"a lifetime cannot be negative ({hours}): it is the hours a VM lives after its checkout, "
                       "at least 1", ExitCode.USAGE)
    if hours < 1:
        raise CliError("a lifetime must be at least 1 hour, not 0", ExitCode.USAGE)
    return hours


# ignore_unknown_options: `-5` is HOURS (to be refused clearly), not an unknown option.
@click.command(epilog=epilog("lifetime"), short_help="Set a VM's lifetime in hours.",
               context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("hours_text", metavar="HOURS")
@json_option
@click.pass_obj
def lifetime(run: Run, host: str, hours_text: str, as_json: bool) -> None:
    """Set how many hours a VM lives after its checkout (absolute, not an extension): at least 1, and at
    most the server's `max_lifetime_upper_limit` when it has one.

    \b
    Example:
      vmpooler lifetime abcdefghijklmno 48
    """
    hours = _lifetime_hours(hours_text)
    with run.output(as_json).waiting(f"Setting the lifetime of {host}…"):
        run.backend().modify(host, {"lifetime": hours})
    _done(run, as_json, f"{host}: lifetime {hours} h", {"hostname": host, "lifetime": hours})


def _pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        tags[key] = value
    return tags


@click.command(epilog=epilog("tag"), short_help="Tag a VM with KEY=VALUE pairs.")
@click.argument("host")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...", callback=_pairs)
@json_option
@click.pass_obj
def tag(run: Run, host: str, tags: dict[str, str], as_json: bool) -> None:
    """Tag a VM (tags show in `show` and in the server's tag statistics).

    \b
    Example:
      vmpooler tag abcdefghijklmno jenkins_build_url=https://ci/job/42 user=jdoe
    """
    with run.output(as_json).waiting(f"Tagging {host}…"):
        run.backend().modify(host, {"tags": tags})
    text = f"{host}: tagged " + ", ".join(f"{k}={v}" for k, v in tags.items())
    _done(run, as_json, text, {"hostname": host, "tags": tags})


@click.command(epilog=epilog("snapshot"), short_help="Snapshot a VM; prints the snapshot's name.")
@click.argument("host")
@json_option
@click.pass_obj
def snapshot(run: Run, host: str, as_json: bool) -> None:
    """Ask for a snapshot of a VM; prints the snapshot's name (taken shortly after, by the manager).

    \b
    Example:
      vmpooler snapshot abcdefghijklmno
    """
    with run.output(as_json).waiting(f"Requesting a snapshot of {host}…"):
        name = run.backend().snapshot(host)
    if not name:
        raise CliError(f"{host}: the server queued a snapshot but did not say its name")
    _done(run, as_json, name, {"hostname": host, "snapshot": name})


@click.command(epilog=epilog("revert"), short_help="Revert a VM to one of its snapshots.")
@click.argument("host")
@click.argument("snapshot_name", metavar="SNAPSHOT")
@json_option
@click.pass_obj
def revert(run: Run, host: str, snapshot_name: str, as_json: bool) -> None:
    """Revert a VM to one of its snapshots (see `show` for the names).

    \b
    Example:
      vmpooler revert abcdefghijklmno n5nkbr84r1xxmnqkbycdc7v5wtmd23dp
    """
    with run.output(as_json).waiting(f"Requesting a revert of {host}…"):
        run.backend().revert(host, snapshot_name)
    _done(run, as_json, f"{host}: revert to {snapshot_name} queued",
          {"hostname": host, "snapshot": snapshot_name})


@click.command(epilog=epilog("disk"))
@click.argument("host")
@click.argument("size", type=click.IntRange(1, 2048), metavar="SIZE")
@json_option
@click.pass_obj
def disk(run: Run, host: str, size: int, as_json: bool) -> None:
    """Add a disk of SIZE GB (1 to 2048) to a VM.

    \b
    Example:
      vmpooler disk abcdefghijklmno 8
    """
    with run.output(as_json).waiting(f"Requesting a disk for {host}…"):
        added = run.backend().disk(host, size)
    _done(run, as_json, f"{host}: {added} disk queued", {"hostname": host, "disk": added})


COMMANDS = (checkout, return_, show, lifetime, tag, snapshot, revert, disk)
