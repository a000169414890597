"""Parsing a checkout request: the JSON body form and the `a+a+b` path form, to one shape."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import InvalidRequest, UnknownPool

# Pool names and aliases as the config accepts them; anything else cannot be a pool.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """Requested name (pool or alias) -> number of VMs, in the order the client gave them."""

    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.counts)


def whole_number(what: str, value: Any, minimum: int) -> int:
    """An int, or a digit string (the original's clients send {"pool": "1"}), of at least `minimum`."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        if len(value.strip()) > 18:  # past any limit, and int() refuses strings over 4,300 digits
            raise InvalidRequest(f"{what} is too large")
        number = int(value)
    else:
        raise InvalidRequest(f"{what} must be a whole number >= {minimum}, not {str(value)[:50]!r}")
    if number < minimum:
        raise InvalidRequest(f"{what} must be >= {minimum}, not {number}")
    return number


def from_mapping(body: Any) -> CheckoutRequest:
    """`{"centos-6-64": "2", "debian-7": 1}` -> request. Raises InvalidRequest for anything else."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object of pool names to counts")
    counts: list[tuple[str, int]] = []
    for name, value in body.items():
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UnknownPool(f"unknown pool {str(name)[:100]!r}", (str(name)[:100],))
        counts.append((name, whole_number(f"count for {name!r}", value, 0)))
    return CheckoutRequest(tuple(counts))


def from_path(spec: str) -> CheckoutRequest:
    """`a+a+b` -> {a: 2, b: 1}."""
    parts = spec.split("+")
    if not spec or any(not p for p in parts):
        raise InvalidRequest(f"bad pool list {spec[:200]!r}: expected name+name+...")
    counts: dict[str, int] = {}
    for part in parts:
        if not NAME_RE.fullmatch(part):
            raise UnknownPool(f"unknown pool {part[:100]!r}", (part[:100],))
        counts[part] = counts.get(part, 0) + 1
    return CheckoutRequest(tuple(counts.items()))


def validate(request: CheckoutRequest, config: Config) -> None:
    """The seed's rule first: any unknown name and nothing is taken. Then the size rules."""
    unknown = tuple(name for name in request.names() if not config.is_known(name))
    if unknown:
        raise UnknownPool(f"unknown pool or alias: {', '.join(unknown)}", unknown)
    if request.total == 0:
        raise InvalidRequest("the request asks for no VMs")
    cap = config.app.max_checkout_per_request
    if request.total > cap:
        raise InvalidRequest(f"the request asks for {request.total} VMs; at most {cap} per request")
