"""API tokens: using one, listing a user's, showing one with its VMs, revoking one.

The original let any authenticated user delete any token (contract A7.12); here revoking needs the owner.
Reading one needs only the token itself, as in the original: its clients send no credentials for it.
Shared by the API and the CLI's Redis backend.
"""

from __future__ import annotations

import re
from typing import Any

from . import vms
from .config import Config
from .errors import NotFound, Unauthorized
from .inventory import Inventory

# The original's alphabet is [a-z0-9]{32}; anything else cannot be a token, so it is not looked up.
TOKEN_RE = re.compile(r"[a-z0-9]{1,64}")


def check_format(token: str) -> str:
    if not TOKEN_RE.fullmatch(token):
        raise NotFound(f"no token {token[:64]!r}")
    return token


async def use(inventory: Inventory, token: str | None) -> str:
    """The user of a valid token (its `last` use is stamped); Unauthorized otherwise."""
    if not token or not TOKEN_RE.fullmatch(token):
        raise Unauthorized("a valid X-AUTH-TOKEN is required")
    user = await inventory.touch_token(token)
    if user is None:
        raise Unauthorized("the X-AUTH-TOKEN is not a valid token")
    return user


async def owned(inventory: Inventory, token: str, user: str) -> dict[str, str]:
    """The token's fields when `user` owns it: NotFound when it does not exist, Unauthorized when
    it belongs to someone else."""
    data = await inventory.token(check_format(token))
    if not data:
        raise NotFound(f"no token {token!r}")
    if data.get("user") != user:
        raise Unauthorized(f"token {token!r} belongs to another user")
    return data


async def of_user(inventory: Inventory, user: str) -> dict[str, dict[str, str]]:
    """The user's tokens with when each was created and last used ("never" when unused)."""
    found = {t: d for t, d in (await inventory.tokens()).items() if d.get("user") == user}
    return {t: {"created": d.get("created", ""), "last": d.get("last") or "never"}
            for t, d in sorted(found.items(), key=lambda item: item[1].get("created", ""))}


async def running_vms(config: Config, inventory: Inventory, token: str) -> list[str]:
    """Hosts checked out with `token`, in pool order: two pipelined round trips, O(running VMs)."""
    pools = [pool.name for pool in config.pools]
    pipe = inventory.redis.pipeline(transaction=False)
    for pool in pools:
        pipe.smembers(inventory.keys.running(pool))
    hosts = sorted(h for members in await pipe.execute() for h in members)
    if not hosts:
        return []
    owners = await inventory.vms(hosts, ["token:token"])
    return [host for host in hosts if (owner := owners[host][0]) is not None and vms.same_token(owner, token)]


async def describe(config: Config, inventory: Inventory, token: str, user: str | None) -> dict[str, Any]:
    """The token's fields and its running VMs. `user` None: the caller holds the token itself (the API's
    GET /token/<token>, where the token in the path is the secret, as in the original), so no owner check."""
    if user is None:
        data: dict[str, Any] = dict(await inventory.token(check_format(token)))
        if not data:
            raise NotFound(f"no token {token!r}")
    else:
        data = dict(await owned(inventory, token, user))
    data["vms"] = {"running": await running_vms(config, inventory, token)}
    return data


async def revoke(inventory: Inventory, token: str, user: str) -> str:
    """Delete `user`'s token; returns when it was created (which names it in the audit log: the token
    itself is never logged)."""
    data = await owned(inventory, token, user)
    if not await inventory.delete_token(token):
        raise NotFound(f"no token {token!r}")
    return data.get("created", "")
