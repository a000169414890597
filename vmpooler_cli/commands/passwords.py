"""`vmpooler hash-password [USER]`: a password hash for the `users` auth provider (`auth: users:` or a
`users_file:`), in the format vmpooler_core/auth.py checks. No server is needed."""

from __future__ import annotations

import sys

import click

from ..context import Run, json_option
from ..errors import CliError
from ..exit_codes import ExitCode
from ..shapes import epilog


def _password() -> str:
    """Asked twice on a terminal; else the first line of stdin (`... | vmpooler hash-password`)."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    return sys.stdin.readline().rstrip("\r\n")


@click.command("hash-password", epilog=epilog("hash-password"),
               short_help="Make a password hash for the users auth provider.")
@click.argument("user", required=False)
@json_option
@click.pass_obj
def hash_password(run: Run, user: str | None, as_json: bool) -> None:
    """Print a hash of a password (asked for, or read from stdin) for the `users` auth provider. With
    USER, print the `USER:HASH` line of a `users_file`; else the hash alone, for `auth: users: {USER: HASH}`.

    \b
    Examples:
      vmpooler hash-password jdoe >> /etc/vmpooler/users.txt
      printf '%s\\n' "$PASSWORD" | vmpooler hash-password
    """
    from vmpooler_core.auth import hash_password as make_hash

    if user is not None and (not user or ":" in user or user != user.strip()):
        raise CliError(f"{user!r} cannot be a user name in a users file (no ':', no surrounding spaces)",
                       ExitCode.USAGE)
    password = _password()
    if not password:
        raise CliError("no password given: an empty password cannot log in", ExitCode.USAGE)
    digest = make_hash(password)
    out = run.output(as_json)
    if out.json:
        out.emit_json({"ok": True, "user": user, "hash": digest})
    else:
        out.line(f"{user}:{digest}" if user is not None else digest)
