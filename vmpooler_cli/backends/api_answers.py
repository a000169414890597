"""Reading the API's answers, whichever version gave them, into what every backend returns.

The versions differ in how they name checked-out VMs, and the CLI shows the same either way:
- v1 (the original of 2016, and ours): short host names, keyed by the pool that supplied them, and the
  domain once, as `domain`;
- v2 and v3 (the original since 2021, and ours under `/api/v3`): `<host>.<domain>` with each VM's own
  pool's domain, no `domain` key, and (as the original's v1 did too from 2018) keyed by the name asked
  for, so a request by alias is answered under the alias.
So a host name is split into the host and its domain, and a VM answered under an alias is looked up
(`GET /vm/<host>`, its `template`) for the pool it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx

from vmpooler_core.errors import ErrorCode

from ..errors import CliError
from .base import Allocated


def body_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def message_of(body: Mapping[str, Any]) -> str | None:
    """The server's own explanation when it gives one (ours does; the original sends {"ok": false})."""
    for key in ("error", "message", "reason"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    failures = body.get("failure")  # v3's PUT /vm/<host>: each thing wrong with the change
    if isinstance(failures, list) and failures:
        return "; ".join(str(failure) for failure in failures)
    return None


def code_of(body: Mapping[str, Any]) -> ErrorCode | None:
    """The error body's machine-readable code; None from a server that sends none (the original) or one
    this client does not know."""
    value = body.get("code")
    if not isinstance(value, str) or value not in ErrorCode.__members__.values():
        return None
    return ErrorCode(value)


def bare(body: Mapping[str, Any]) -> bool:
    """An answer that explains nothing, as the original's 404 for a path it has no route for (and for an
    unknown pool or VM alike): `{"ok": false}` (or no JSON at all). It explains the misses on its newer
    routes (`bad_templates`, `message`), and ours every error (`code`)."""
    return code_of(body) is None and message_of(body) is None and set(body) <= {"ok"}


def one_object(body: Mapping[str, Any], host: str) -> tuple[str, dict[str, Any]]:
    """The per-VM object of `{"ok": true, "<host>": {...}}`: the server keys it by the short name
    (it may shorten an FQDN we sent), so take the one object-valued key."""
    for key, value in body.items():
        if key != "ok" and isinstance(value, dict):
            return str(key), value
    raise CliError(f"unexpected answer for {host}: no VM object in {sorted(body)}")


def vm_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A VM's document with its `domain`, as v1 gives it: v2 and v3 give the `fqdn` instead."""
    fqdn = doc.get("fqdn")
    if isinstance(doc.get("domain"), str) or not isinstance(fqdn, str) or "." not in fqdn.rstrip("."):
        return doc
    return {**doc, "domain": fqdn.rstrip(".").split(".", 1)[1]}


def _split(name: str) -> tuple[str, str | None]:
    """`host.example.com` -> ("host", "example.com"); a v3 pool without a domain answers `host.`."""
    host, _, domain = name.rstrip(".").partition(".")
    return host, domain or None


def allocated(data: Mapping[str, Any], asked: Collection[str], pool_names: Callable[[], list[str] | None],
              pool_of: Callable[[str], str | None]) -> Allocated:
    """The checkout answer of any version as (pool, host) pairs in the answer's order, with each host's
    FQDN. `pool_names()` is the server's pool list (asked only when a key may be an alias), `pool_of(host)`
    the pool a VM came from (asked only for VMs answered under an alias)."""
    given = data.get("domain")
    domain = given if isinstance(given, str) and given else None
    answered: list[tuple[str, str]] = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            continue  # "ok", "domain"
        hosts = entry.get("hostname")
        answered.extend((str(key), str(host)) for host in ([hosts] if isinstance(hosts, str) else hosts or []))
    # Keyed by a name asked for: a pool, or (v2, v3, the original's v1 since 2018) an alias.
    names = pool_names() if any(key in asked for key, _ in answered) else None
    vms: list[tuple[str, str]] = []
    fqdns: dict[str, str] = {}
    domains: set[str | None] = set()
    for key, sent in answered:
        host, own = (sent, None) if domain else _split(sent)
        if own is not None:
            fqdns[host] = f"{host}.{own}"
        domains.add(own)
        pool = key if names is None or key in names else pool_of(host) or key
        vms.append((pool, host))
    if domain is None and len(domains) == 1:
        domain = domains.pop()  # every VM from one domain: the same `domain` as v1 would say
    return Allocated(tuple(vms), domain, fqdns)
