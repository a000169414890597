"""Commands on the pools as a whole: pools, status, watch.

Their `--json` shapes are documented in vmpooler_cli/shapes.py and shown by each `--help`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..backends.base import PoolRow
from ..context import Run, json_option
from ..exit_codes import ExitCode
from ..shapes import epilog

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from ..render import Output


@click.command(epilog=epilog("pools"), short_help="List the pools: ready, pending, running, size.")
@json_option
@click.pass_obj
def pools(run: Run, as_json: bool) -> None:
    """List the pools: aliases, ready, pending, running and size; then, for a pool sized to demand, the
    size the manager keeps it at now and why ("pool1: target 12, sized to demand: ..."), and for a pool
    whose provider is degraded, why it is short ("pool1: provider vcenter1 cannot log in since ...").

    \b
    Example:
      vmpooler pools
    """
    out = run.output(as_json)
    with out.waiting("Reading the pools…"):
        rows = run.backend().pools()
    out.pools(rows)


def _duration(section: Any, when: str = " today") -> str:
    if not isinstance(section, Mapping):
        return "-"
    count = (section.get("count") or {}).get("total", 0)
    d = section.get("duration") or {}
    if not count:
        return f"none{when}"
    return f"{count}{when}, average {d.get('average', 0)} s (min {d.get('min', 0)}, max {d.get('max', 0)})"


def status_fields(doc: Mapping[str, Any], server: str) -> tuple[str, list[tuple[str, str]]]:
    summary = doc.get("status") or {}
    title = str(summary.get("message", ""))
    if summary.get("empty"):
        title += " Empty: " + ", ".join(summary["empty"])
    cap = doc.get("capacity") or {}
    q = doc.get("queue") or {}
    fields = [
        ("server", server),
        ("capacity", f"{cap.get('current', '-')}/{cap.get('total', '-')} ready ({cap.get('percent', '-')}%)"),
        ("queue", f"pending {q.get('pending', '-')} (cloning {q.get('cloning', '-')}, booting "
                  f"{q.get('booting', '-')}), ready {q.get('ready', '-')}, running {q.get('running', '-')}, "
                  f"completed {q.get('completed', '-')}, total {q.get('total', '-')}"),
        ("clones", _duration(doc.get("clone"))),
        ("boots", _duration(doc.get("boot"))),
        ("uptime", f"{summary.get('uptime', '-')} s"),
        *_health_fields(doc),
    ]
    return title, fields


def _health_fields(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One line per provider (servers that report on them), then one per pool it leaves short."""
    providers = doc.get("providers")
    fields: list[tuple[str, str]] = []
    for name, health in (providers.items() if isinstance(providers, Mapping) else ()):
        health = health if isinstance(health, Mapping) else {}
        text = str(health.get("state", "-"))
        if health.get("reason"):
            text += f" since {health.get('since', '-')}: {health['reason']}"
        for pool, problem in (health.get("pools") or {}).items():
            if isinstance(problem, Mapping):
                text += f"; pool {pool} since {problem.get('since', '-')}: {problem.get('reason', '-')}"
        fields.append((f"provider {name}", text))
    pools = doc.get("pools")
    for name, entry in (pools.items() if isinstance(pools, Mapping) else ()):
        if isinstance(entry, Mapping) and entry.get("reason"):
            fields.append((f"pool {name}", f"short: {entry['reason']}"))
    return fields


@click.command(epilog=epilog("status"), short_help="Show the service-wide status.")
@json_option
@click.pass_obj
def status(run: Run, as_json: bool) -> None:
    """Show the service-wide status: the server and API version talked to, capacity, queue, clone and
    boot times, empty pools, and the providers' health with why pools are short (once a manager has
    reported on them).

    \b
    Example:
      vmpooler status
    """
    out = run.output(as_json)
    backend = run.backend()
    with out.waiting("Reading the status…"):
        doc = backend.status()
    if out.json:
        out.emit_json(doc)
        return
    title, fields = status_fields(doc, backend.describe())
    out.fields(fields, title=title)


def summary_fields(doc: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The /summary document as lines: boots and clones overall and per pool, then each tag's values."""
    daily = doc.get("daily") or [{}]
    title = f"Summary {daily[0].get('date', '?')} to {daily[-1].get('date', '?')}"
    fields = [("boots", _duration(doc.get("boot"), "")), ("clones", _duration(doc.get("clone"), ""))]
    for section, label in (("boot", "boots"), ("clone", "clones")):
        by_pool = (doc.get(section) or {}).get("duration", {}).get("pool") or {}
        counts = (doc.get(section) or {}).get("count", {}).get("pool") or {}
        for pool in sorted(by_pool):
            one = {"duration": by_pool[pool], "count": counts.get(pool) or {}}
            fields.append((f"{label} {pool}", _duration(one, "")))
    for tag, values in sorted((doc.get("tag") or {}).items()):
        shown = ", ".join(f"{value}={n}" for value, n in sorted(values.items()) if value != "total")
        fields.append((f"tag {tag}", shown))
    return title, fields


@click.command(epilog=epilog("summary"), short_help="Show clone and boot times and tag counts over days.")
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First day [default: today].")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last day [default: today].")
@json_option
@click.pass_obj
def summary(run: Run, first: str | None, last: str | None, as_json: bool) -> None:
    """Show the summary: clones and boots (how many, how long) overall and per pool, and the count of
    each tag's values, over a range of days (the API's /summary).

    \b
    Example:
      vmpooler summary --from 2016-07-01 --to 2016-07-31
    """
    out = run.output(as_json)
    with out.waiting("Reading the summary…"):
        doc = run.backend().summary(first, last)
    if out.json:
        out.emit_json(doc)
        return
    title, fields = summary_fields(doc)
    out.fields(fields, title=title)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Failures a watch waits out (shown, and retried): the server or Redis away, a rate limit. Anything else
# on the first refresh (no such server kind, a refused token) is the command's error.
_PASSING = (ExitCode.UNREACHABLE, ExitCode.LIMITED)


@click.command(epilog=epilog("watch"), short_help="Watch the pools table live until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(min=0), default=0,
              help="Stop after this many refreshes (default: run until Ctrl-C).")
@json_option
@click.pass_context
def watch(ctx: click.Context, interval: float, count: int, as_json: bool) -> None:
    """Show the pools table, refreshed until Ctrl-C (exit 130).

    On a terminal the table updates in place; piped, a table (or with --json, one JSON line) is
    printed per refresh. An outage (the server or its Redis unreachable) is shown, in place of the
    header's calm, and retried until it ends, from the first refresh on. With --count, the exit code is
    the last refresh's.

    \b
    Example:
      vmpooler watch --interval 5
    """
    from ..errors import classify

    run: Run = ctx.obj
    out = run.output(as_json)
    backend = run.backend()
    live = out.terminal and not out.json
    rows: list[PoolRow] = []
    failed: ExitCode | None = None
    problem = ""
    refreshes = 0
    context = _live(out, rows, interval, backend.where) if live else None
    try:
        while True:
            try:
                rows, problem, failed = backend.pools(), "", None
            except Exception as err:  # shown and retried: an outage must not end the watch
                failed, problem = classify(err)
                if refreshes == 0 and failed not in _PASSING:
                    raise
                if not live:
                    out.note(f"vmpooler: {problem}")
            refreshes += 1
            if context is not None:
                context.update(_frame(out, rows, interval, backend.where, problem), refresh=True)
            elif out.json:
                out.line(json.dumps({"time": _now(), "pools": [row.as_json() for row in rows],
                                     **({"error": problem} if problem else {})}))
            else:
                out.line(f"{_now()}  {problem}".rstrip())
                out.pools(rows)
                out.line()
            if count and refreshes >= count:
                if failed is not None:
                    ctx.exit(failed)
                return
            time.sleep(interval)
    finally:
        if context is not None:
            context.stop()


def _frame(out: Output, rows: Sequence[PoolRow], interval: float, where: str, problem: str) -> RenderableType:
    """One screenful: a header line like watch(1)'s, the last error if the latest refresh failed, and
    the table (the last good figures, when it did)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    stamp = datetime.now().strftime("%H:%M:%S")
    header = Text.from_markup(f"[bold]Every {interval:g}s:[/] {escape(where)}  {stamp}  [dim](Ctrl-C to stop)[/]")
    parts: list[RenderableType] = [header]
    if problem:
        since = " (showing the last figures)" if rows else ""
        parts.append(Text.from_markup(f"[bold red]{escape(problem)}[/]{since}; trying again every {interval:g}s"))
    parts.append(out.pools_renderable(rows))
    return Group(*parts)


def _live(out: Output, rows: Sequence[PoolRow], interval: float, where: str) -> Live:
    from rich.live import Live

    live = Live(_frame(out, rows, interval, where, ""), console=out.console(), auto_refresh=False, transient=False)
    live.start()
    return live


COMMANDS = (pools, status, watch, summary)
