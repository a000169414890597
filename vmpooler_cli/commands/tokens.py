"""`vmpooler token create|list|delete`.

Over the API these use HTTP Basic auth: the user is --user (or VMPOOLER_USER, or your login name), the
password comes from VMPOOLER_PASSWORD or a prompt. Direct on Redis no password is asked: whoever can
write to the pooler's Redis can write its tokens anyway. Against a server (or config) without auth, each
fails at once, before any prompt.

Their `--json` shapes are documented in vmpooler_cli/shapes.py and shown by each `--help`.
"""

from __future__ import annotations

import click

from ..context import Run, json_option
from ..shapes import epilog

user_option = click.option("--user", "-u", metavar="USER",
                           help="Whose tokens [env VMPOOLER_USER; default: your login name].")


def _credentials(run: Run, user: str | None) -> tuple[str, str | None]:
    settings = run.settings()
    name = user or settings.user_or_login()
    backend = run.backend()
    backend.require_tokens()  # a server without auth says so now, not after a password was typed
    if not backend.needs_password:
        return name, None
    password = run.env.get("VMPOOLER_PASSWORD")
    if password is None:
        password = click.prompt(f"Password for {name}", hide_input=True, err=True)
    return name, password


@click.group()
def token() -> None:
    """Create, list and delete auth tokens.

    \b
    Examples:
      vmpooler token create --user jdoe
      vmpooler token list
      vmpooler token delete abcdefghijklmnopqrstuvwxyz012345
    """


@token.command(epilog=epilog("token create"))
@user_option
@json_option
@click.pass_obj
def create(run: Run, user: str | None, as_json: bool) -> None:
    """Create a token and print it.

    \b
    Example:
      export VMPOOLER_TOKEN=$(vmpooler token create --user jdoe)
    """
    name, password = _credentials(run, user)
    out = run.output(as_json)
    with out.waiting("Creating a token…"):
        new = run.backend().token_create(name, password)
    if out.json:
        out.emit_json({"ok": True, "user": name, "token": new})
    else:
        out.line(new)


@token.command("list", epilog=epilog("token list"))
@user_option
@json_option
@click.pass_obj
def list_(run: Run, user: str | None, as_json: bool) -> None:
    """List your tokens with when each was created and last used.

    \b
    Example:
      vmpooler token list --user jdoe
    """
    name, password = _credentials(run, user)
    out = run.output(as_json)
    with out.waiting("Reading tokens…"):
        tokens = run.backend().token_list(name, password)
    # Oldest first, whatever order the server's key scan gave.
    ordered = sorted(tokens.items(), key=lambda item: (item[1].get("created", ""), item[0]))
    if out.json:
        out.emit_json({"user": name, "tokens": [{"token": t, "created": d.get("created", ""),
                                                 "last": d.get("last", "never")} for t, d in ordered]})
        return
    out.table(("token", "created", "last"), [[t, d.get("created", ""), d.get("last", "never")] for t, d in ordered])


@token.command(epilog=epilog("token delete"))
@click.argument("token_value", metavar="TOKEN")
@user_option
@json_option
@click.pass_obj
def delete(run: Run, token_value: str, user: str | None, as_json: bool) -> None:
    """Delete a token.

    \b
    Example:
      vmpooler token delete abcdefghijklmnopqrstuvwxyz012345
    """
    name, password = _credentials(run, user)
    out = run.output(as_json)
    with out.waiting("Deleting the token…"):
        run.backend().token_delete(token_value, name, password)
    if out.json:
        out.emit_json({"ok": True, "token": token_value})
    else:
        out.line(f"token {token_value} deleted")
