"""The configuration as API v3's `GET /full_config` shows it: every section the daemon runs with, in the
original's section names, and never a secret (the original showed passwords to anyone, B7.25: here each
password, a Redis URL's password and the users' password hashes are `***`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .config import Config, Secret

MASK = "***"


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses and mappings as objects, tuples as lists, patterns as their text."""
    if isinstance(value, Secret):
        return MASK
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    return value


def full_config(config: Config) -> dict[str, Any]:
    redis = plain(config.redis)
    if config.redis.url:
        redis["url"] = config.redis.describe()  # masked, as in every message
    doc: dict[str, Any] = {
        "config": plain(config.app),
        "redis": redis,
        "providers": {name: {"provider_class": p.kind, **plain(p.options)} for name, p in config.providers.items()},
        "pools": [plain(pool) for pool in config.pools],
        "dns_configs": plain(config.dns_configs),
        "tagfilter": plain(config.tagfilter),
        "rate_limits": plain(config.rate_limits),
    }
    if config.auth is not None:
        auth = plain(config.auth)
        auth["users"] = sorted(config.auth.users)  # who, never their password hashes
        doc["auth"] = auth
    for name in ("statsd", "graphite"):
        sink = getattr(config.metrics, name)
        if sink is not None:
            doc[name] = plain(sink)
    if config.graphs:
        doc["graphs"] = plain(config.graphs)
    return doc
