"""The `vmpooler` click group: shared options, the per-run state, and the one place errors become exit
codes. Commands live in ./commands; each parses its arguments, makes one backend call and renders.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .commands import held, ondemand, passwords, pools, ssh, tokens, vms
from .context import Run
from .exit_codes import HELP as EXIT_HELP
from .exit_codes import ExitCode
from .shapes import ERROR

EPILOG = f"""\b
Settings: options > environment (VMPOOLER_URL, VMPOOLER_REDIS_URL, VMPOOLER_REDIS_FROM_CONFIG,
VMPOOLER_CONFIG, VMPOOLER_TOKEN, VMPOOLER_USER, VMPOOLER_TIMEOUT) > ~/.config/vmpooler/cli.yaml (its
profile from --profile or VMPOOLER_PROFILE, over its top level) > defaults.

\b
Shell completion (pool names and aliases too):
  bash: eval "$(_VMPOOLER_COMPLETE=bash_source vmpooler)"
  zsh:  eval "$(_VMPOOLER_COMPLETE=zsh_source vmpooler)"
  fish: _VMPOOLER_COMPLETE=fish_source vmpooler | source

{EXIT_HELP}
"""


class VmpoolerGroup(click.Group):
    """Maps every outcome to a named exit code and prints errors as one line on stderr."""

    aliases = {"delete": "return"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        run = Run(os.environ)
        code = self._run(run, args, prog_name or "vmpooler", complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, run: Run, args: Sequence[str] | None, prog_name: str, complete_var: str | None,
             extra: dict[str, Any]) -> int:
        from .errors import classify, error_word
        from .render import error_line

        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, obj=run, **extra)
            run.show_notes()
            # Without standalone mode click returns ctx.exit()'s code, or the command's own value.
            return result if isinstance(result, int) else ExitCode.OK
        except click.ClickException as err:
            run.show_notes()
            err.show()
            code = ExitCode.USAGE if err.exit_code == ExitCode.USAGE else ExitCode.ERROR
            return self._json_error(run, argv, err.format_message(), code.name.lower(), err.exit_code)
        except click.Abort as err:
            if isinstance(err.__context__, KeyboardInterrupt) or isinstance(err.__cause__, KeyboardInterrupt):
                return self._json_error(run, argv, "interrupted", "interrupted", ExitCode.INTERRUPTED)
            message = "no input (a password prompt needs a terminal, or set VMPOOLER_PASSWORD)"
            error_line(message)
            return self._json_error(run, argv, message, "error", ExitCode.ERROR)
        except KeyboardInterrupt:
            click.echo(err=True)
            return self._json_error(run, argv, "interrupted", "interrupted", ExitCode.INTERRUPTED)
        except Exception as err:  # the one place every failure becomes an exit code
            code, message = classify(err)
            if run.debug:
                traceback.print_exc()
                run.show_notes()
            error_line(message)
            return self._json_error(run, argv, message, error_word(err, code), code)
        finally:
            run.show_notes()
            run.close()

    @staticmethod
    def _json_error(run: Run, argv: list[str], reason: str, word: str, code: int) -> int:
        """With --json, every failure is also one JSON object on stdout (the stderr line stays, for people).
        A usage error may come before click has read --json, so the command line is looked at too."""
        options = argv[: argv.index("--")] if "--" in argv else argv
        if run.json or "--json" in options:
            import json

            click.echo(json.dumps({"ok": False, "reason": reason, "code": word, "exit": int(code)}, indent=2))
        return code


@click.group(cls=VmpoolerGroup, name="vmpooler", epilog=EPILOG,
             commands=[*vms.COMMANDS, held.mine, ssh.ssh, *pools.COMMANDS, tokens.token, passwords.hash_password,
                       ondemand.request],
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--api", "url", metavar="URL",
              help="API server: vmpoolerd, or the original vmpooler of any year (API v1, v2 or v3, asked once "
                   "and remembered, or named by a URL ending in /api/vN) [env VMPOOLER_URL; default "
                   "http://127.0.0.1:4567].")
@click.option("--redis", "redis_url", metavar="URL",
              help="Work directly on Redis instead, e.g. redis://host:6379/0 [env VMPOOLER_REDIS_URL].")
@click.option("--redis-from-config", is_flag=True, default=None,
              help="Work directly on the Redis of the config's `redis:` section, as the daemon does (Sentinel, "
                   "ACL user, TLS, unix socket) [env VMPOOLER_REDIS_FROM_CONFIG].")
@click.option("--config", metavar="FILE",
              help="vmpooler config with the pools and aliases; needed with --redis and --redis-from-config. "
                   "Alone (no server named anywhere), it means the config's own Redis, as the daemon uses it "
                   "[env VMPOOLER_CONFIG].")
@click.option("--token", metavar="TOKEN", help="Auth token, sent as X-AUTH-TOKEN [env VMPOOLER_TOKEN].")
@click.option("--profile", metavar="NAME",
              help="Use the settings file's profile NAME (its `profiles:`), e.g. one per server [env "
                   "VMPOOLER_PROFILE].")
@click.option("--timeout", metavar="SECONDS", type=float,
              help="Wait at most this long for an answer (connecting: at most 3 s) [env VMPOOLER_TIMEOUT; "
                   "default 30].")
@click.option("--json", "as_json", is_flag=True,
              help=f"Print JSON for every command; a failure too, as {ERROR} on stdout.")
@click.option("--debug", is_flag=True,
              help="Show tracebacks for errors, and (on stderr, when the command ends) the server and API version "
                   "talked to and each request made.")
@click.version_option(__version__, "-V", "--version", prog_name="vmpooler")
@click.pass_context
def cli(ctx: click.Context, url: str | None, redis_url: str | None, redis_from_config: bool | None,
        config: str | None, token: str | None, profile: str | None, timeout: float | None, as_json: bool,
        debug: bool) -> None:
    """Check out, return and inspect pooled VMs: over the vmpooler API or directly on Redis.

    \b
    Examples:
      vmpooler checkout centos-6-64             # prints the VM's hostname
      vmpooler pools                            # ready/pending/running per pool
      vmpooler --redis redis://db/0 --config vmpooler.yaml checkout debian-7
      vmpooler --redis-from-config --config /etc/vmpooler/vmpooler.yaml pools
    """
    if ctx.obj is None:  # invoked without VmpoolerGroup.main (click's own test helpers, say)
        ctx.obj = Run(os.environ)
    run: Run = ctx.obj
    run.debug = debug
    run.json = run.json or as_json
    run.options = {"url": url, "redis_url": redis_url, "redis_from_config": redis_from_config, "config": config,
                   "token": token, "profile": profile, "timeout": timeout}
