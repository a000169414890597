"""The Lua scripts (in ./lua/*.lua), each read once and registered once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

NAMES = ("checkout", "return", "move", "add_pending", "forget", "discover", "status", "touch_token",
         # the manager's
         "settle_discovered", "lease", "presence")


@cache
def source(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


def register(client: aioredis.Redis) -> dict[str, AsyncScript]:
    """Scripts run by EVALSHA, falling back to EVAL once after a Redis restart (NOSCRIPT)."""
    return {name: client.register_script(source(name)) for name in NAMES}
