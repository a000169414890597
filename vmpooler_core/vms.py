"""One VM: its details, changing its lifetime and tags, and queueing disk and snapshot work.

Shared by the API's `/vm/<hostname>` routes and the CLI's Redis backend, so both give the same answers.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import socket
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import audit, clock
from .config import Config
from .errors import InvalidRequest, NotFound
from .inventory import Inventory
from .keys import STATES
from .request import whole_number

HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
MAX_DISK_GB = 2048
_SNAPSHOT_ALPHABET = string.ascii_lowercase + string.digits


def shorten(hostname: str, domain: str | None) -> str:
    """`abc.company.com` -> `abc` when `company.com` is the configured domain; otherwise unchanged."""
    if domain and hostname.endswith("." + domain):
        return hostname[: -len(domain) - 1]
    return hostname


def pool_of(vm: Mapping[str, str]) -> str:
    """The pool a VM hash names (the original wrote only `template`); "-" when it names none."""
    return vm.get("pool") or vm.get("template") or "-"


def check_host(host: str) -> str:
    if not HOST_RE.fullmatch(host):
        raise NotFound(f"no VM named {host[:255]!r}")
    return host


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 2)


async def _ip(host: str) -> str:
    """Forward DNS of the short name, as the original reports it; "" when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, family=socket.AF_INET), 0.5)
    except (OSError, TimeoutError, UnicodeError):
        return ""
    return str(infos[0][4][0]) if infos else ""


async def _load(inventory: Inventory, host: str, history: bool) -> tuple[dict[str, str], str, list[str]]:
    data = await inventory.vm(check_host(host))
    if not data:
        raise NotFound(f"no VM named {host!r}")
    destroyed = bool(data.get("destroy"))
    pool = data.get("pool") or data.get("template") or ""
    pipe = inventory.redis.pipeline(transaction=False)
    if not destroyed:
        for state in STATES:
            pipe.sismember(inventory.keys.state(state, pool), host)
    if history:
        pipe.lrange(inventory.keys.history(host), 0, -1)
    replies = await pipe.execute() if not destroyed or history else []
    entries: list[str] = replies.pop() if history else []
    if destroyed:
        return data, "destroyed", entries
    found = [state for state, present in zip(STATES, replies, strict=True) if present]
    return data, (found[0] if found else "unknown"), entries


async def load(inventory: Inventory, host: str) -> tuple[dict[str, str], str]:
    """The VM's hash and its state ("pending", "ready", "running", "completed", "discovered",
    "destroyed" or "unknown"), read in two pipelined round trips. NotFound when there is no hash."""
    data, state, _ = await _load(inventory, host, history=False)
    return data, state


async def describe(config: Config, inventory: Inventory, host: str, now: float | None = None,
                   resolve: bool = True) -> dict[str, Any]:
    """The original's VM document: template, lifetime, running, state, tags, snapshots, disk, ip, domain;
    and, when it has any, the VM's history (audit.py: oldest first), which the original did not keep."""
    now = time.time() if now is None else now
    data, state, history = await _load(inventory, host, history=True)
    doc: dict[str, Any] = {"template": data.get("pool") or data.get("template", ""),
                           "lifetime": config.lifetime_hours(data.get("lifetime"))}
    checkout = clock.parse(data.get("checkout"))
    if checkout is not None:
        end = clock.parse(data.get("destroy")) or now
        doc["running"] = _hours(max(0.0, end - checkout))
    doc["state"] = state
    tags = {k[4:]: v for k, v in data.items() if k.startswith("tag:")}
    if tags:
        doc["tags"] = tags
    snapshots = [k[9:] for k in data if k.startswith("snapshot:")]
    if snapshots:
        doc["snapshots"] = snapshots
    if data.get("disk"):
        doc["disk"] = [d for d in data["disk"].split(":") if d]
    # The provider's address when the manager recorded one (vSphere's guest IP), as the original's later
    # versions record `ip`; else forward DNS, as the original's first did.
    doc["ip"] = data.get("ip") or (await _ip(host) if resolve else "")
    if config.app.domain:
        doc["domain"] = config.app.domain
    if history:
        doc["history"] = [audit.read_entry(raw) for raw in history]
    return doc


def first_label(hostname: str) -> str:
    """API v3 shortens any FQDN to its host (pools may have different domains)."""
    return hostname.split(".", 1)[0]


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def describe_v3(config: Config, inventory: Inventory, host: str, now: float | None = None,
                      resolve: bool = True) -> dict[str, Any]:
    """API v3's VM document: v1's without `domain`, with a running VM's `remaining` hours, `start_time`
    and `end_time` (RFC 3339; from its lifetime, the default one when it has none: the original used 0
    then, B7.23), `fqdn` when its pool has a domain, `host` and `migrated` when recorded."""
    now = time.time() if now is None else now
    v1 = await describe(config, inventory, host, now, resolve)
    fields = ("checkout", "pool", "template", "host", "migrated")
    data = dict(zip(fields, (await inventory.vms([host], fields))[host], strict=True))
    later = ("domain", "history")
    keys = list(v1)
    doc = {key: v1[key] for key in keys[:keys.index("state")]}  # template, lifetime, running
    checkout = clock.parse(data["checkout"])
    if v1["state"] == "running" and checkout is not None:
        end = checkout + v1["lifetime"] * 3600
        doc.update(remaining=_hours(end - now), start_time=_rfc3339(checkout), end_time=_rfc3339(end))
    # `state` after the times, then what follows it in v1's document (tags, snapshots, disk, ip).
    doc["state"] = v1["state"]
    doc.update({key: value for key, value in v1.items() if key not in doc and key not in later})
    pool = config.pool_index.get(data["pool"] or data["template"] or "")
    if pool is not None and pool.domain:
        doc["fqdn"] = f"{host}.{pool.domain}"
    doc.update({field: data[field] for field in ("host", "migrated") if data[field]})
    if "history" in v1:
        doc["history"] = v1["history"]
    return doc


# Changes -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Modification:
    lifetime: int | None = None
    tags: Mapping[str, str] | None = None


def check_arguments(body: Any) -> Mapping[str, Any]:
    """A PUT body's shape: a JSON object of `lifetime` and/or `tags`."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object with `lifetime` and/or `tags`")
    unknown = [str(k) for k in body if k not in ("lifetime", "tags")]
    if unknown:
        raise InvalidRequest(f"unknown argument(s): {', '.join(unknown)[:200]}")
    return body


def parse_modification(body: Any, config: Config) -> Modification:
    """Validate a PUT body completely before anything is written (the original's two phases). Who may
    make the change is access.py's to say."""
    body = check_arguments(body)
    lifetime = None
    if "lifetime" in body:
        lifetime = whole_number("lifetime", body["lifetime"], 1)
        limit = config.app.max_lifetime_upper_limit
        if limit is not None and lifetime > limit:
            raise InvalidRequest(f"lifetime {lifetime} is over the limit of {limit} hours")
    tags = None
    if "tags" in body:
        tags = _tags(body["tags"], config)
    return Modification(lifetime, tags)


def _tags(raw: Any, config: Config) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise InvalidRequest("tags must be a JSON object")
    allowed = config.app.allowed_tags
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,50}", key):
            raise InvalidRequest(f"bad tag name {str(key)[:60]!r}")
        if allowed is not None and key not in allowed:
            raise InvalidRequest(f"tag {key!r} is not allowed (allowed: {', '.join(allowed)})")
        if value is None or value == "":
            continue  # the original skips empty tags
        if isinstance(value, (Mapping, list)):
            raise InvalidRequest(f"tag {key!r} must have a plain value")
        text = str(value)
        if len(text) > 255:
            raise InvalidRequest(f"tag {key!r} is longer than 255 characters")
        pattern = config.tagfilter.get(key)
        if pattern is not None:
            match = pattern.match(text)
            if match and match.groups():
                text = "".join(g for g in match.groups() if g)
        tags[key] = text
    return tags


def same_token(owner: str, token: str | None) -> bool:
    """Constant-time: how long the comparison takes says nothing about how much of a guess was right."""
    return token is not None and hmac.compare_digest(owner.encode(), token.encode())


async def modify(inventory: Inventory, host: str, change: Modification) -> None:
    if change.lifetime is not None:
        await inventory.set_fields(host, {"lifetime": change.lifetime})
    if change.tags:
        await inventory.add_tags(host, change.tags)


async def request_disk(inventory: Inventory, host: str, size: str) -> str:
    if not re.fullmatch(r"\d{1,5}", size) or not 0 < int(size) <= MAX_DISK_GB:
        raise InvalidRequest(f"disk size must be a whole number of GB from 1 to {MAX_DISK_GB}")
    await inventory.queue_task(inventory.keys.disk_tasks(), host, str(int(size)))
    return f"+{int(size)}gb"


async def request_snapshot(inventory: Inventory, host: str) -> str:
    name = "".join(secrets.choice(_SNAPSHOT_ALPHABET) for _ in range(32))
    await inventory.queue_task(inventory.keys.snapshot_tasks(), host, name)
    return name


async def request_revert(inventory: Inventory, host: str, data: Mapping[str, str], snapshot: str) -> None:
    # Only a snapshot the manager has actually taken (it records the time) can be reverted to.
    if clock.parse(data.get(f"snapshot:{snapshot}")) is None:
        raise NotFound(f"{host} has no snapshot {snapshot[:64]!r}")
    await inventory.queue_task(inventory.keys.revert_tasks(), host, snapshot)
