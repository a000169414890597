"""The Lua scripts (in ./lua/*.lua), each read once and registered once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

NAMES = ("checkout", "return", "move", "add_pending", "forget", "discover", "status", "touch_token",
         "ratelimit",
         # the manager's
         "settle_discovered", "lease", "presence")

# Lua libraries put in front of the scripts that use them: Redis has no include, and a second script
# call would cost the request a second round trip.
LIBRARIES: dict[str, tuple[str, ...]] = {"checkout": ("gcra",), "return": ("gcra",), "ratelimit": ("gcra",)}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@cache
def source(name: str) -> str:
    return "\n".join([*(_read(library) for library in LIBRARIES.get(name, ())), _read(name)])


def register(client: aioredis.Redis) -> dict[str, AsyncScript]:
    """Scripts run by EVALSHA, falling back to EVAL once after a Redis restart (NOSCRIPT)."""
    return {name: client.register_script(source(name)) for name in NAMES}
