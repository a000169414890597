"""The `providers:` section, and which provider each pool uses.

A pool's provider is the one it names, else the only one configured, else an error. The dummy provider
(VMs that exist nowhere) is never a default: a pool whose `providers:` names only vSphere gets vSphere,
and a pool gets the dummy provider only by naming it. (The original gave every pool without `provider:`
the dummy one.) Each provider entry is checked against its kind's declared options (provider_options.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any, cast

from . import config_keys
from .config import ProviderConfig
from .config_demand import max_vms_of
from .config_node import Node
from .errors import ConfigError
from .provider_options import PROVIDER_KINDS, Option

READY_CHECKS = ("tcp", "hostname", "none")


def configured_providers(top: Node) -> dict[str, ProviderConfig]:
    """The configured providers: the `providers:` entries, and the era-A top-level `vsphere:` section
    (the `vsphere` provider, unless `providers:` has one: then it is set aside, with a warning)."""
    providers: dict[str, ProviderConfig] = {}
    section = top.child("providers")
    for name in section.keys():
        options = section.child(name)
        kind = str(options.text("provider_class", name))
        if kind not in PROVIDER_KINDS:
            raise section.error(name, f"unknown provider {kind!r}{_hint(kind, PROVIDER_KINDS)} (known: "
                                f"{', '.join(PROVIDER_KINDS)}); name one of them, or set `provider_class:`")
        providers[name] = _entry(name, kind, options)
    if top.has("vsphere") and "vsphere" in providers:
        top.ignore("vsphere")
    elif list(top.child("vsphere").keys()):
        providers["vsphere"] = _entry("vsphere", "vsphere", top.child("vsphere"))
    return providers


def _entry(name: str, kind: str, options: Node) -> ProviderConfig:
    declared = PROVIDER_KINDS[kind]
    options.accept_unused(config_keys.PROVIDER + declared.original_options)
    read_options(options, declared.options)
    plain = {k: v for k, v in options.plain().items() if k in declared.names()}
    return ProviderConfig(name, cast(Any, kind), MappingProxyType(plain), max_vms=max_vms_of(options))


def read_options(node: Node, options: tuple[Option, ...]) -> None:
    """Check each declared option's value (and so mark it as a key the provider reads)."""
    for option in options:
        key = option.name
        if option.required:
            node.require(key)
        if option.type in ("text", "secret"):
            node.text(key, None)
        elif option.type in ("port", "count"):
            node.integer(key, None, minimum=1)
        elif option.type == "flag":
            node.flag(key, False)
        elif option.type == "ready_check":
            ready_check_of(node)
        elif node.number(key, 0.0) > 100 and option.type == "percent":  # seconds or percent: >= 0
            raise node.error(key, "must be a percentage from 0 to 100")


def ready_check_of(node: Node) -> str | None:
    value = node.text("ready_check", None)
    if value is not None and value not in READY_CHECKS:
        raise node.error("ready_check", f"must be one of {', '.join(READY_CHECKS)}")
    return value


def provider_of(node: Node, name: str, providers: dict[str, ProviderConfig]) -> str | ConfigError:
    """The pool's provider: the one it names, else the only one configured, else an error. The dummy
    provider (fake VMs) is never a default: a pool gets it only by naming it. The error is returned, to
    be raised once every key has been checked: a misspelt `providers:` is the mistake to report first."""
    named = node.text("provider", None)
    if named is None:
        if len(providers) == 1:
            return next(iter(providers))
        if not providers:
            return node.error("provider", f"pool {name} names no provider and none is configured; add a "
                              "`providers:` section, or `provider: dummy` to the pool for fake VMs")
        return node.error("provider", f"pool {name} names no provider and there are {len(providers)}: "
                          f"{', '.join(providers)}; add `provider:` to the pool")
    if named == "dummy" and named not in providers:
        providers[named] = ProviderConfig("dummy", "dummy")  # named, so wanted: with its defaults
    if named not in providers:
        return node.error("provider", f"unknown provider {named!r}{_hint(named, providers)} "
                          f"(configured: {', '.join(providers) or 'none'})")
    return named


def _hint(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f", did you mean `{close[0]}`?" if close else ""
