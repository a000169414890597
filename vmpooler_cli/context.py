"""One invocation's state, shared by the group and its commands through click's `ctx.obj`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .shapes import ERROR

if TYPE_CHECKING:  # the real imports happen on first use, to keep `vmpooler --help` fast
    from .backends.base import Backend
    from .render import Output
    from .settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class Run:
    """One invocation's state (click's ctx.obj): the options, and the backend, built on first use."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.debug = False
        self.json = False
        self.options: dict[str, Any] = {}
        self._settings: Settings | None = None
        self._backend: Backend | None = None
        self.notes: list[str] = []  # --debug: what was sent where, shown when the command ends

    def settings(self) -> Settings:
        if self._settings is None:
            from .settings import load

            self._settings = load(self.options, self.env)
        return self._settings

    def backend(self) -> Backend:
        if self._backend is None:
            from .backends import open_backend

            self._backend = open_backend(self.settings(), self.env, self.notes.append if self.debug else None)
        return self._backend

    def show_notes(self) -> None:
        """--debug: which server and API version the command talked to, and each request it made (after
        the traceback, if any, and before the error line: a failure's last line stays the error)."""
        if not self.debug:
            return
        if self._backend is not None:
            self.notes.append(f"talked to {self._backend.describe()}")
        for note in self.notes:
            click.echo(f"vmpooler: debug: {note}", err=True)
        self.notes.clear()
        self.debug = False  # shown once

    def output(self, as_json: bool = False) -> Output:
        from .render import Output

        return Output(as_json=as_json or self.json, env=self.env)

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend = self._backend, None
            backend.close()


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """A command's --json also makes its errors JSON (app.py), so the run must know of it."""
    run = ctx.find_object(Run)
    if value and run is not None:
        run.json = True
    return value


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, callback=_remember_json,
                        help=f"Print JSON, in the stable shape documented for this command; errors too: {ERROR}.")(f)
