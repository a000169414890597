"""The `dns_configs:` section (today's original) and each pool's domain.

A pool names its entry with `dns_plugin:`; the entry's `domain` is the pool's, and API v3 answers its
host names as `<host>.<domain>`. A pool that names none has `config: domain` (the only domain of the
2016 format), or none. The original's `dynamic-dns` class manages no DNS records; its plugin classes
(`gcp`, ...) create and delete records, which this pooler does not do: their entries load for their
domain, and their other keys are reported with the original's unused keys (config_keys.py).
"""

from __future__ import annotations

import difflib
import re

from .config import DnsConfig
from .config_node import Node

NO_RECORDS = "dynamic-dns"  # the original's class that leaves DNS to something else (DHCP, dynamic updates)
_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def dns_configs(top: Node) -> dict[str, DnsConfig]:
    section = top.child("dns_configs")
    found: dict[str, DnsConfig] = {}
    for name in section.keys():
        entry = section.child(name)
        entry.require("dns_class")
        entry.require("domain")
        dns_class = str(entry.text("dns_class", ""))
        domain = str(entry.text("domain", ""))
        if not _DOMAIN.fullmatch(domain):
            raise entry.error("domain", f"{domain!r} is not a DNS domain (expected e.g. example.com)")
        if dns_class != NO_RECORDS:
            # A plugin that manages records: its settings mean nothing here, its domain does.
            entry.ignore("dns_class")
            entry.accept_unused(("*",))
        found[name] = DnsConfig(name, dns_class, domain)
    return found


def dns_plugin_of(node: Node, configs: dict[str, DnsConfig]) -> str | None:
    """The pool's `dns_plugin`, which must name a `dns_configs:` entry."""
    name = node.text("dns_plugin", None)
    if name is not None and name not in configs:
        close = difflib.get_close_matches(name, list(configs), n=1)
        hint = f", did you mean `{close[0]}`?" if close else ""
        raise node.error("dns_plugin", f"no dns_configs entry named {name!r}{hint} (configured: "
                                       f"{', '.join(configs) or 'none'})")
    return name
