"""Shell completion of pool names and aliases, for bash, zsh and fish (click's `_VMPOOLER_COMPLETE`).

The names come from the vmpooler config for the Redis backend (no Redis needed), or from the API's
GET /status pools block (GET /vm on an old server). A completion must never hang the shell, so the
API gets a short timeout and any failure simply completes nothing.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click
from click.shell_completion import CompletionItem

COMPLETION_TIMEOUT = 1.0


def _root_options(ctx: click.Context) -> dict[str, Any]:
    params = ctx.find_root().params
    return {key: params.get(key) for key in ("url", "redis_url", "redis_from_config", "config", "token", "profile")}


def pool_names(ctx: click.Context) -> list[str]:
    from .backends import open_backend
    from .settings import load

    env = os.environ
    settings = replace(load(_root_options(ctx), env), timeout=COMPLETION_TIMEOUT)
    backend = open_backend(settings, env)
    try:
        return backend.names()
    finally:
        backend.close()


def complete_pools(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Completes the last name of `a+b+c` too: the part after the last `+`."""
    head, plus, last = incomplete.rpartition("+")
    prefix = head + plus
    try:
        names = pool_names(ctx)
    except Exception:  # no server, bad config: complete nothing rather than fail the shell
        return []
    return [CompletionItem(prefix + name) for name in sorted(names) if name.startswith(last)]
