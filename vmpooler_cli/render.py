"""Output: JSON for programs, rich tables and colours for a terminal, plain aligned text for pipes.

rich is imported only when stdout (or stderr, for the spinner) is a terminal: output piped into
another program needs none of it and starts faster without it. Colour follows NO_COLOR
(https://no-color.org): set and non-empty means no colour, as rich itself reads it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from .backends.base import PoolRow

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

POOL_COLUMNS = ("pool", "aliases", "ready", "pending", "running", "size")


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def pool_cells(row: PoolRow) -> list[str]:
    return [row.name, ", ".join(row.aliases), _cell(row.ready), _cell(row.pending), _cell(row.running),
            _cell(row.size)]


def short_lines(rows: Sequence[PoolRow]) -> list[str]:
    """Under the pools table: `pool: target N, why` for the pools sized to demand, then `pool: why it is
    short` for the pools whose provider says why."""
    return [*(f"{row.name}: target {row.target}, {row.target_why or '-'}" for row in rows if row.target is not None),
            *(f"{row.name}: {row.reason}" for row in rows if row.reason)]


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to line up, no borders and no colour: still readable, and `awk`/`cut` friendly."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


class Output:
    def __init__(self, *, as_json: bool, env: Mapping[str, str]) -> None:
        self.json = as_json
        self.env = env
        self.terminal = sys.stdout.isatty()
        self.no_color = bool(env.get("NO_COLOR"))
        self._console: Console | None = None

    # Plain building blocks ------------------------------------------------------------------------

    def emit_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2))

    def line(self, text: str = "") -> None:
        click.echo(text)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, on stderr, so it never mixes with the output."""
        click.echo(text, err=True)

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stdout, no_color=self.no_color, highlight=False,
                                    force_terminal=self.terminal or None)
        return self._console

    def print(self, renderable: RenderableType) -> None:
        self.console().print(renderable)

    @contextlib.contextmanager
    def waiting(self, text: str) -> Iterator[None]:
        """A spinner on stderr while the server works, only when a person is watching stderr."""
        if not sys.stderr.isatty():
            yield
            return
        from rich.console import Console

        with Console(stderr=True, no_color=self.no_color).status(text, spinner="dots"):
            yield

    # Tables ---------------------------------------------------------------------------------------

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if not self.terminal:
            self.line(plain_table(columns, rows))
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        self.print(table)

    def pools_renderable(self, rows: Sequence[PoolRow]) -> RenderableType:
        """The pools table as rich draws it: ready in green, or red when a pool that should have VMs
        has none (the pools the /status document calls empty); then why pools are short, if known."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        table = Table(header_style="bold")
        for column in POOL_COLUMNS:
            table.add_column(column, justify="left" if column in ("pool", "aliases") else "right")
        for row in rows:
            cells = [escape(cell) for cell in pool_cells(row)]  # a name is data, never rich markup
            if row.ready is not None:
                empty = row.ready == 0 and (row.size or 0) > 0
                cells[2] = f"[{'bold red' if empty else 'green'}]{cells[2]}[/]"
            table.add_row(*cells)
        reasons = short_lines(rows)
        if not reasons:
            return table
        return Group(table, *(Text(line, style="yellow") for line in reasons))

    def pools(self, rows: Sequence[PoolRow]) -> None:
        if self.json:
            self.emit_json({"pools": [row.as_json() for row in rows]})
        elif self.terminal:
            self.print(self.pools_renderable(rows))
        else:
            self.line(plain_table(POOL_COLUMNS, [pool_cells(row) for row in rows]))
            reasons = short_lines(rows)
            if reasons:
                self.line()
                for line in reasons:
                    self.line(line)

    def fields(self, pairs: Sequence[tuple[str, str]], title: str | None = None) -> None:
        """`name  value` lines: a record (one VM, the service status) for a person to read."""
        if title:
            self.line(click.style(title, bold=True) if self.terminal and not self.no_color else title)
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(f"  {name.ljust(width)}  {value}")

    def history(self, entries: Sequence[Mapping[str, str]]) -> None:
        """A VM's history under a `history` heading, oldest first, events lined up."""
        self.line("  history")
        width = max(len(entry.get("event", "")) for entry in entries)
        for entry in entries:
            self.line(f"    {history_line(entry, width)}")


def history_line(entry: Mapping[str, str], width: int = 0) -> str:
    """`<at>  <event>  <who> from <client>, request <id>  <detail>`: one entry of a VM's history."""
    who: list[str] = []
    if entry.get("manager"):
        who.append(f"manager {entry['manager']}")
    else:
        user = entry.get("user", "-")
        if user and user != "-":
            who.append(user)
        if entry.get("client"):
            who.append(f"from {entry['client']}")
        if entry.get("request"):
            who.append(f"request {entry['request']}")
    parts = [entry.get("at", "?"), entry.get("event", "?").ljust(width), " ".join(who), entry.get("detail", "")]
    return "  ".join(part for part in parts if part).rstrip()


def error_line(message: str) -> None:
    """The one line every failure prints: `vmpooler: error: ...`, red only on a colour terminal."""
    import os

    prefix = "vmpooler: error:"
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        prefix = click.style(prefix, fg="red", bold=True)
    click.echo(f"{prefix} {message}", err=True)
