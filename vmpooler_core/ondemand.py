"""On-demand requests (API v3's /ondemandvm): VMs cloned for one client instead of taken from a pool's
ready VMs, typically from pools kept at size 0.

A request names pools or aliases with counts (`{"centos-7": "2", "request_id": "..."}`, or `a+a+b` in
the path). Each VM asked of an alias is given to one of its pools when the request is made, as the
original does: by `backend_weight` (the weight of each pool's clone target; 0 is never chosen) when every
candidate pool has a weight, else at random. The result is the request's parts, (alias, pool, count),
kept as the original keeps them ("<alias>:<pool>:<count>,...", lua/ondemand.lua). The managers clone them
(vmpoolerd/manager/ondemand.py); the client polls until they are all delivered, checked out to it.

Where we differ from the original (contract B7): a plain pool name is served by its pool whether or not a
manager has written the pool list yet (B7.28); string and list aliases alike (B7.20); the request is
written in one atomic script, and its id is checked (it becomes part of Redis key names).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import Conflict, ErrorCode, InvalidRequest, NotFound, UnknownPool
from .request import NAME_RE, from_path, whole_number

# A client may choose its request's id. It becomes part of key names (`<prefix>__<id>__<alias>__<pool>`)
# and of the task members ("<alias>:<pool>:<count>:<id>"), so no ':' and no '__'.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TTL_MESSAGE = "The request failed to provision instances within the configured ondemand_request_ttl '{ttl}'"
DELETED_MESSAGE = "The request has been deleted"


class TooManyInstances(InvalidRequest):
    """A count over `max_ondemand_instances_per_request` (the original's 403); nothing was requested."""

    code = ErrorCode.TOO_MANY_INSTANCES

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name  # the first name asked for more than that
        super().__init__(f"requested amount of instances exceeds the maximum {limit}")


class DuplicateRequest(Conflict):
    """A request of that id exists already (the original's 409); nothing was requested."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"request_id '{request_id}' has already been created")


class NoSuchRequest(NotFound):
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"no request found for request_id '{request_id}'")


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a client asks for: name (pool or alias) -> count, in its order; and the id it chose, if any."""

    counts: tuple[tuple[str, int], ...]
    request_id: str | None = None

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.counts)


@dataclass(frozen=True, slots=True)
class Part:
    """`count` VMs of `pool` for a request that asked for `alias` (the pool's own name, or an alias)."""

    alias: str
    pool: str
    count: int


def check_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not REQUEST_ID_RE.fullmatch(request_id) or "__" in request_id:
        raise InvalidRequest(f"request_id must be 1 to 100 letters, digits, '.', '_' or '-' (no '__'), "
                             f"not {str(request_id)[:100]!r}")
    return request_id


def from_mapping(body: Any) -> Wanted:
    """`{"centos-7": "2", "debian-7": 1, "request_id": "..."}` -> Wanted. InvalidRequest for a body that
    is not an object or a count that is not a whole number >= 1; UnknownPool for names that cannot be pools."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object of pool names to counts")
    counts: list[tuple[str, int]] = []
    bad: list[str] = []
    request_id = None
    for name, value in body.items():
        if name == "request_id":
            request_id = check_id(value)
        elif not isinstance(name, str) or not NAME_RE.fullmatch(name):
            bad.append(str(name)[:100])
        else:
            counts.append((name, whole_number(f"count for {name!r}", value, 1)))
    if bad:
        raise UnknownPool(f"unknown pool or alias: {', '.join(bad)}", tuple(bad))
    return Wanted(tuple(counts), request_id)


def from_spec(spec: str) -> Wanted:
    """`a+a+b` (the path form) -> {a: 2, b: 1}."""
    return Wanted(from_path(spec).counts)


def validate(wanted: Wanted, config: Config) -> None:
    """The original's order: unknown names (404), then counts over the maximum (403); and a request for
    nothing is a 400 here (the original wrote an empty request that no manager could fill)."""
    unknown = tuple(name for name in wanted.names() if not config.is_known(name))
    if unknown:
        raise UnknownPool(f"unknown pool or alias: {', '.join(unknown)}", unknown)
    if not wanted.counts:
        raise InvalidRequest("the request asks for no VMs")
    limit = config.ondemand.max_instances_per_request
    over = next((name for name, count in wanted.counts if count > limit), None)
    if over is not None:
        raise TooManyInstances(limit, over)


def _weights(config: Config, candidates: tuple[str, ...]) -> list[int] | None:
    """The backend weight of each candidate pool's clone target; None unless every one has a weight."""
    weights = config.ondemand.backend_weight
    targets = [config.pool(name).clone_target or config.app.clone_target for name in candidates]
    if not all(target is not None and target in weights for target in targets):
        return None
    return [weights[target] for target in targets if target is not None]


def choose(config: Config, name: str, rng: random.Random) -> str:
    """The pool that serves one VM asked of `name`."""
    candidates = config.candidates(name)
    if len(candidates) == 1:
        return candidates[0]
    weights = _weights(config, candidates)
    if weights is not None and any(weights):
        return rng.choices(candidates, weights=weights)[0]
    return rng.choice(candidates)


def parts(wanted: Wanted, config: Config, rng: random.Random | None = None) -> tuple[Part, ...]:
    """The request's parts: each VM given to a pool, then counted per (alias, pool) in the client's order."""
    rng = rng or random.Random()
    counted: dict[tuple[str, str], int] = {}
    for name, count in wanted.counts:
        for _ in range(count):
            key = (name, choose(config, name, rng))
            counted[key] = counted.get(key, 0) + 1
    return tuple(Part(alias, pool, count) for (alias, pool), count in counted.items())


def encode(found: tuple[Part, ...]) -> str:
    return ",".join(f"{part.alias}:{part.pool}:{part.count}" for part in found)


def decode(text: str | None) -> tuple[Part, ...]:
    """The parts as the original writes them; malformed entries are skipped (as its manager skips them)."""
    found = []
    for entry in (text or "").split(","):
        alias, _, rest = entry.partition(":")
        pool, _, count = rest.partition(":")
        if alias and pool and count.isdigit():
            found.append(Part(alias, pool, int(count)))
    return tuple(found)


def new_id() -> str:
    return str(uuid.uuid4())
