"""The `http:` section: time limits on reading a request and caps on open connections.

    http:
      header_timeout: 10                # seconds to send a request's head
      body_timeout: 30                  # seconds to send its body, once the head is in
      keep_alive_timeout: 5             # seconds an idle kept-alive connection stays open
      max_connections: 4000             # in all (default: from the open-files limit)
      max_connections_per_address: 256  # from one client address (0: no cap)
"""

from __future__ import annotations

from .config import HttpSettings
from .config_node import Node

_DEFAULTS = HttpSettings()


def _seconds(node: Node, key: str, default: float) -> float:
    value = node.number(key, default)
    if value <= 0:
        raise node.error(key, f"must be more than 0 seconds (got {value:g})")
    return value


def http_settings(node: Node) -> HttpSettings:
    return HttpSettings(
        header_timeout=_seconds(node, "header_timeout", _DEFAULTS.header_timeout),
        body_timeout=_seconds(node, "body_timeout", _DEFAULTS.body_timeout),
        keep_alive_timeout=node.integer("keep_alive_timeout", _DEFAULTS.keep_alive_timeout, minimum=1),
        max_connections=node.integer("max_connections", _DEFAULTS.max_connections, minimum=1),
        max_connections_per_address=node.integer("max_connections_per_address",
                                                 _DEFAULTS.max_connections_per_address, minimum=0),
    )
