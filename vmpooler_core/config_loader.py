"""Load the original vmpooler's YAML format into a frozen `Config`.

Keys may be written `:pools:` (the Ruby symbol form) or `pools:`; both mean the same. Every error is a
`ConfigError` naming the file, the line and the key, so an admin can go straight to it. A key the loader
does not read is an error too (with the nearest valid key as a hint), unless it is one of the original's
that we do not use (config_keys.py): those load, with one warning naming them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from . import config_extra, config_keys
from .config import (
    AppSettings,
    Config,
    DnsConfig,
    MetricsSettings,
    PoolConfig,
    ProviderConfig,
    SinkSettings,
)
from .config_auth import auth_settings
from .config_demand import demand_settings, max_size_of
from .config_dns import dns_configs, dns_plugin_of
from .config_http import http_settings
from .config_limits import rate_limits
from .config_node import Node
from .config_ondemand import ondemand_settings
from .config_providers import configured_providers, provider_of, read_options, ready_check_of
from .config_redis import redis_settings
from .errors import ConfigError
from .provider_options import PROVIDER_KINDS, Option

log = logging.getLogger("vmpooler.config")

# Environment overrides ---------------------------------------------------------------------------

# (variable, section, key): one table, so the documentation and the code cannot drift apart.
ENV_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("VMPOOLER_REDIS_URL", "redis", "url"),
    ("VMPOOLER_REDIS_SERVER", "redis", "server"),
    ("VMPOOLER_REDIS_PORT", "redis", "port"),
    ("VMPOOLER_REDIS_USERNAME", "redis", "username"),
    ("VMPOOLER_REDIS_PASSWORD", "redis", "password"),
    ("VMPOOLER_REDIS_SENTINEL_USERNAME", "redis", "sentinel_username"),
    ("VMPOOLER_REDIS_SENTINEL_PASSWORD", "redis", "sentinel_password"),
    ("VMPOOLER_REDIS_UNIX_SOCKET", "redis", "unix_socket"),
    ("VMPOOLER_REDIS_SSL", "redis", "ssl"),
    ("VMPOOLER_REDIS_SSL_CA_CERTS", "redis", "ssl_ca_certs"),
    ("VMPOOLER_REDIS_SSL_CERTFILE", "redis", "ssl_certfile"),
    ("VMPOOLER_REDIS_SSL_KEYFILE", "redis", "ssl_keyfile"),
    ("VMPOOLER_REDIS_SSL_CHECK_HOSTNAME", "redis", "ssl_check_hostname"),
    ("VMPOOLER_REDIS_DB", "redis", "db"),
    ("VMPOOLER_REDIS_DATA_TTL", "redis", "data_ttl"),
    ("VMPOOLER_DOMAIN", "config", "domain"),
    ("VMPOOLER_PREFIX", "config", "prefix"),
    ("VMPOOLER_TASK_LIMIT", "config", "task_limit"),
    ("VMPOOLER_TIMEOUT", "config", "timeout"),
    ("VMPOOLER_VM_CHECKTIME", "config", "vm_checktime"),
    ("VMPOOLER_VM_LIFETIME", "config", "vm_lifetime"),
    ("VMPOOLER_VM_LIFETIME_AUTH", "config", "vm_lifetime_auth"),
    ("VMPOOLER_READY_TTL", "config", "ready_ttl"),
    ("VMPOOLER_SITE_NAME", "config", "site_name"),
    ("VMPOOLER_LOGFILE", "config", "logfile"),
    ("VMPOOLER_LOG_LEVEL", "config", "log_level"),
    ("VMPOOLER_BIND", "config", "bind"),
    ("VMPOOLER_PORT", "config", "port"),
    ("VMPOOLER_MAX_CHECKOUT_PER_REQUEST", "config", "max_checkout_per_request"),
    ("VMPOOLER_MAX_VMS_PER_TOKEN", "config", "max_vms_per_token"),
    ("VMPOOLER_RATE_LIMITING_ENABLED", "config", "rate_limiting_enabled"),
    ("VMPOOLER_MAX_ONDEMAND_INSTANCES_PER_REQUEST", "config", "max_ondemand_instances_per_request"),
    ("VMPOOLER_ONDEMAND_REQUEST_TTL", "config", "ondemand_request_ttl"),
    ("VMPOOLER_STATSD_SERVER", "statsd", "server"),
    ("VMPOOLER_STATSD_PORT", "statsd", "port"),
    ("VMPOOLER_STATSD_PREFIX", "statsd", "prefix"),
    ("VMPOOLER_GRAPHITE_SERVER", "graphite", "server"),
    ("VMPOOLER_GRAPHITE_PORT", "graphite", "port"),
    ("VMPOOLER_GRAPHITE_PREFIX", "graphite", "prefix"),
)


def _apply_env(top: Node, env: Mapping[str, str]) -> dict[str, Node]:
    sections = {name: top.child(name) for name in ("redis", "config", "statsd", "graphite")}
    for var, section, key in ENV_OVERRIDES:
        if env.get(var):
            sections[section].override(key, env[var], var)
    return sections


# Sections ----------------------------------------------------------------------------------------

def _app(node: Node) -> AppSettings:
    def opt_int(key: str, default: int | None = None, minimum: int = 0) -> int | None:
        return node.integer(key, default, minimum=minimum)

    def req_int(key: str, default: int, minimum: int = 0) -> int:
        return node.integer(key, default, minimum=minimum)

    node.accept_unused(config_keys.CONFIG)
    node.names("extra_config")  # merged before the sections are read (config_extra.py)
    level = str(node.text("log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise node.error("log_level", f"must be one of DEBUG, INFO, WARNING, ERROR (got {level!r})")
    allowed = node.names("allowed_tags")
    tag_owned_vms = str(node.text("tag_owned_vms", "anyone"))
    if tag_owned_vms not in ("anyone", "owner"):
        raise node.error("tag_owned_vms", f"must be anyone or owner (got {tag_owned_vms!r})")
    return AppSettings(
        domain=node.text("domain", None),
        prefix=node.text("prefix", ""),
        task_limit=req_int("task_limit", 10, minimum=1),
        timeout=req_int("timeout", 15, minimum=1),
        vm_checktime=req_int("vm_checktime", 1),
        vm_lifetime=req_int("vm_lifetime", 24),
        vm_lifetime_auth=opt_int("vm_lifetime_auth"),
        max_lifetime_upper_limit=opt_int("max_lifetime_upper_limit", minimum=1),
        ready_ttl=opt_int("ready_ttl"),
        allowed_tags=allowed if node.has("allowed_tags") else None,
        max_tags_per_vm=req_int("max_tags_per_vm", 100, minimum=1),
        max_tag_name_length=req_int("max_tag_name_length", 50, minimum=1),
        max_tag_value_length=req_int("max_tag_value_length", 255, minimum=1),
        tag_owned_vms=cast(Any, tag_owned_vms),
        site_name=node.text("site_name", "<b>vmpooler</b>"),
        logfile=node.text("logfile", None),
        log_level=level,
        access_log=node.flag("access_log", False),
        clone_target=node.text("clone_target", None),
        bind=node.text("bind", "127.0.0.1"),
        port=req_int("port", 4567, minimum=0),
        max_checkout_per_request=req_int("max_checkout_per_request", 100, minimum=1),
        manager_lease_seconds=req_int("manager_lease_seconds", 30, minimum=2),
        manager_loop_seconds=node.number("manager_loop_seconds", 5.0),
        manager_backoff_max=node.number("manager_backoff_max", 60.0),
        max_vms_per_token=opt_int("max_vms_per_token", minimum=1),
        pooler_id=_pooler_id(node),
        purge_unconfigured=node.flag("purge_unconfigured", False),
        experimental_features=node.flag("experimental_features", False),
    )


def _pooler_id(node: Node) -> str | None:
    value = node.text("pooler_id", None)
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", value):
        raise node.error("pooler_id", f"{value!r} may use only letters, digits, '.', '_', ':' and '-' "
                                      "(at most 64, starting with a letter or digit)")
    return value


def _sink(node: Node, default_port: int) -> SinkSettings | None:
    if not list(node.keys()):
        return None
    node.require("server")
    return SinkSettings(
        server=str(node.text("server", "")),
        port=node.integer("port", default_port, minimum=1),
        prefix=node.text("prefix", "vmpooler"),
    )


def _metrics(statsd: Node, graphite: Node) -> MetricsSettings:
    # Both are checked; statsd and graphite are mutually exclusive and statsd takes precedence.
    chosen, fallback = _sink(statsd, 8125), _sink(graphite, 2003)
    return MetricsSettings(statsd=chosen) if chosen is not None else MetricsSettings(graphite=fallback)


def _pool(node: Node, providers: dict[str, ProviderConfig],
          dns: dict[str, DnsConfig]) -> tuple[PoolConfig, ConfigError | None]:
    node.require("name")
    name = str(node.text("name", ""))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise node.error("name", f"{name!r} may use only letters, digits, '.', '_' and '-'")
    node.require("size")
    size = node.integer("size", 0, minimum=0)
    provider = provider_of(node, name, providers)
    # A pool's own keys depend on its provider's kind; with none chosen yet, any kind's are accepted.
    kinds = [providers[provider].kind] if isinstance(provider, str) else list(PROVIDER_KINDS)
    pool_options: tuple[Option, ...] = ()
    for kind in kinds:
        node.accept_unused(config_keys.POOL + PROVIDER_KINDS[kind].original_pool_options)
        pool_options += PROVIDER_KINDS[kind].pool_options
    if kinds == ["vsphere"]:
        node.require("template")
        node.require("folder")
    ready_check = ready_check_of(node)
    read_options(node, pool_options)
    options = {k: v for k, v in node.plain().items() if k in {o.name for o in pool_options}}
    dns_plugin = dns_plugin_of(node, dns)
    return PoolConfig(
        name=name,
        size=size,
        alias=tuple(a for a in node.names("alias") if a != name),
        template=node.text("template", None),
        folder=node.text("folder", None),
        datastore=node.text("datastore", None),
        clone_target=node.text("clone_target", None),
        timeout=node.integer("timeout", None, minimum=1),
        ready_ttl=node.integer("ready_ttl", None),
        provider=provider if isinstance(provider, str) else "",
        ready_check=cast(Any, ready_check),
        ready_check_port=node.integer("ready_check_port", 22, minimum=1),
        options=MappingProxyType(options),
        dns_plugin=dns_plugin,
        domain=dns[dns_plugin].domain if dns_plugin is not None else None,
        max_size=max_size_of(node, size),
    ), None if isinstance(provider, str) else provider


def _pools(top: Node, providers: dict[str, ProviderConfig],
           dns: dict[str, DnsConfig]) -> tuple[tuple[PoolConfig, ...], ConfigError | None]:
    """The pools, and the first pool's error in choosing its provider (raised after the key check)."""
    raw = top.raw("pools")
    if raw is not None and not isinstance(raw, list):
        raise top.error("pools", "must be a list of pools")
    nodes = top.items("pools")
    pools: list[PoolConfig] = []
    seen: dict[str, Node] = {}
    unchosen: list[ConfigError] = []
    for node in nodes:
        pool, error = _pool(node, providers, dns)
        unchosen += [error] if error else []
        first = seen.get(pool.name)
        if first is not None:
            where = f"line {first.line}" if first.source == node.source else f"{first.source}:{first.line}"
            raise node.error("name", f"duplicate pool name {pool.name!r} (first at {where})")
        seen[pool.name] = node
        pools.append(pool)
    for node, pool in zip(nodes, pools, strict=True):
        for alias in pool.alias:
            if alias in seen:
                # Today's original allows it (its own specs do it) and draws between the two at random.
                log.warning("%s:%s: %s: alias %r of pool %r is also the name of a pool: a request for %r "
                            "is served by that pool first, then by %r", node.source_of("alias"),
                            node.line_of("alias"), node.where("alias"), alias, pool.name, alias, pool.name)
    return tuple(pools), (unchosen[0] if unchosen else None)


def _tagfilter(node: Node) -> dict[str, re.Pattern[str]]:
    filters: dict[str, re.Pattern[str]] = {}
    for tag in node.keys():
        pattern = str(node.raw(tag))
        try:
            filters[tag] = re.compile(pattern)
        except re.error as err:
            raise node.error(tag, f"regex {pattern!r} does not compile: {err}") from None
    return filters


# Entry point -------------------------------------------------------------------------------------

def _parse(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {err.problem or err.context}", source=source, line=line) from None
    except YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", source=source) from None


def resolve_source(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Where the configuration comes from: an explicit path, `VMPOOLER_CONFIG_FILE`, or
    `VMPOOLER_CONFIG` (a path, or for compatibility with the original a whole YAML document)."""
    if path is None:
        path = env.get("VMPOOLER_CONFIG_FILE") or None
    if path is None and env.get("VMPOOLER_CONFIG"):
        value = env["VMPOOLER_CONFIG"]
        if "\n" in value or ":" in value and not Path(value).exists():
            return ("environment VMPOOLER_CONFIG", value)
        path = value
    if path is None:
        return None
    try:
        return (str(path), Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read configuration: {err.strerror}", source=str(path)) from None


def load(path: str | os.PathLike[str] | None = None, *, text: str | None = None,
         env: Mapping[str, str] | None = None, source: str | None = None) -> Config:
    """Read, validate and freeze a configuration. `text` wins over `path`; with neither, the
    environment names the source; with nothing at all, an empty configuration (no pools)."""
    env = os.environ if env is None else env
    if text is None:
        found = resolve_source(path, env)
        source, text = found if found else ("<defaults>", "")
    source = source or "<text>"
    data = config_extra.with_extra_files(_parse(text, source), source, env, _parse)
    top = Node(data, source, "")
    top.accept_unused(config_keys.TOP)
    base_dir = Path(source).parent if Path(source).exists() else Path.cwd()
    sections = _apply_env(top, env)
    providers = configured_providers(top)
    dns = dns_configs(top)
    pools, unchosen = _pools(top, providers, dns)
    redis, app = redis_settings(sections["redis"], base_dir), _app(sections["config"])
    # A pool without a dns_plugin has the one domain of the 2016 format, if any.
    pools = tuple(p if p.dns_plugin else replace(p, domain=app.domain) for p in pools)
    metrics = _metrics(sections["statsd"], sections["graphite"])
    auth = auth_settings(top.child("auth"), base_dir, env)
    tagfilter = _tagfilter(top.child("tagfilter"))
    graphs = top.child("graphs")
    graphs.text("server", None), graphs.text("prefix", None)  # the dashboard's graph source: display only
    limits = rate_limits(top.child("rate_limits"), sections["config"])
    http = http_settings(top.child("http"))
    ondemand = ondemand_settings(sections["config"])
    demand = demand_settings(top.child("demand"))
    config_keys.check(top)  # last: every section has been read, so every valid key has been asked for
    if unchosen is not None:
        raise unchosen
    return Config(
        redis=redis,
        app=app,
        pools=pools,
        providers=MappingProxyType(providers),
        metrics=metrics,
        auth=auth,
        tagfilter=MappingProxyType(tagfilter),
        graphs=MappingProxyType(graphs.plain()),
        rate_limits=limits,
        dns_configs=MappingProxyType(dns),
        http=http,
        ondemand=ondemand,
        demand=demand,
        source=source,
    ).with_pools(pools)
