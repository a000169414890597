"""The `rate_limits:` section: per request class, one limit per token and one per client address.

    rate_limits:
      enabled: true                     # or the original's `config: rate_limiting_enabled: true`
      checkout: {per_token: {limit: 20, period: 60}, per_address: {limit: 20, period: 60}}
      return: {limit: 50, period: 60}   # one {limit, period} sets both
      other: {per_token: {limit: 500}, per_address: {limit: 100}}

The original's names are read too, each meaning the limits it had there: `vm_creation` (checkout),
`vm_deletion` (return), `authenticated` (other, per token) and `global_per_ip` (other, per address).
"""

from __future__ import annotations

import re
from types import MappingProxyType

from .config import DEFAULT_RATE_LIMITS, RATE_CLASSES, ClassLimits, Rate, RateLimitSettings
from .config_node import Node

_KINDS = ("per_token", "per_address")
# The original's key -> (class, the limits of it that key sets).
_ORIGINAL: dict[str, tuple[str, tuple[str, ...]]] = {
    "vm_creation": ("checkout", _KINDS),
    "vm_deletion": ("return", _KINDS),
    "authenticated": ("other", ("per_token",)),
    "global_per_ip": ("other", ("per_address",)),
}
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def _unknown(node: Node, known: tuple[str, ...]) -> None:
    node.known(*known)
    for key in node.keys():
        if key not in known:
            raise node.unknown(key, f" (known: {', '.join(known)})")


def _rate(node: Node) -> Rate:
    """`{limit: N, period: S}`: N requests per S seconds (default 60); N = 0 means no limit."""
    _unknown(node, ("limit", "period"))
    if not node.has("limit"):
        raise node.error("limit", "is required (requests per period; 0 = no limit)")
    return Rate(limit=node.integer("limit", 0, minimum=0), period=node.integer("period", 60, minimum=1))


def _class_limits(node: Node) -> dict[str, Rate]:
    """Either `{per_token: {...}, per_address: {...}}` (each optional) or one `{limit, period}` for both."""
    if node.has("limit") or node.has("period"):
        rate = _rate(node)
        return {kind: rate for kind in _KINDS}
    _unknown(node, _KINDS)
    return {kind: _rate(node.child(kind)) for kind in _KINDS if node.has(kind)}


def rate_limits(node: Node, app: Node) -> RateLimitSettings:
    """`node` is the `rate_limits:` section, `app` the `config:` section (its `rate_limiting_enabled`)."""
    _unknown(node, ("enabled", "address_header", *RATE_CLASSES, *_ORIGINAL))
    limits = {cls: {"per_token": c.per_token, "per_address": c.per_address} for cls, c in DEFAULT_RATE_LIMITS.items()}
    set_by: dict[tuple[str, str], str] = {}

    def assign(key: str, cls: str, rates: dict[str, Rate]) -> None:
        for kind, rate in rates.items():
            earlier = set_by.get((cls, kind))
            if earlier is not None:
                raise node.error(key, f"sets the {cls} limit {kind} that `{earlier}` sets too; keep one")
            set_by[(cls, kind)] = key
            limits[cls][kind] = rate

    for key, (cls, kinds) in _ORIGINAL.items():
        if node.has(key):
            rate = _rate(node.child(key))
            assign(key, cls, {kind: rate for kind in kinds})
    for cls in RATE_CLASSES:
        if node.has(cls):
            assign(cls, cls, _class_limits(node.child(cls)))
    header = node.text("address_header", None)
    if header is not None and not _HEADER_NAME.fullmatch(header):
        raise node.error("address_header", f"{header!r} is not an HTTP header name")
    enabled = node.flag("enabled", app.flag("rate_limiting_enabled", False))
    return RateLimitSettings(
        enabled=enabled,
        classes=MappingProxyType({cls: ClassLimits(**rates) for cls, rates in limits.items()}),
        address_header=header.lower() if header else None,
    )
