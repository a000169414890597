"""Load the original vmpooler's YAML format into a frozen `Config`.

Keys may be written `:pools:` (the Ruby symbol form) or `pools:`; both mean the same. Every error is a
`ConfigError` naming the file, the line and the key, so an admin can go straight to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .config import (
    AppSettings,
    AuthSettings,
    Config,
    LdapSettings,
    MetricsSettings,
    PoolConfig,
    ProviderConfig,
    RedisSettings,
    Secret,
    SinkSettings,
)
from .config_limits import rate_limits
from .config_node import Node, item_line
from .errors import ConfigError

_READY_CHECKS = ("tcp", "hostname", "none")


# Environment overrides ---------------------------------------------------------------------------

# (variable, section, key): one table, so the documentation and the code cannot drift apart.
ENV_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("VMPOOLER_REDIS_URL", "redis", "url"),
    ("VMPOOLER_REDIS_SERVER", "redis", "server"),
    ("VMPOOLER_REDIS_PORT", "redis", "port"),
    ("VMPOOLER_REDIS_PASSWORD", "redis", "password"),
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

def _redis(node: Node) -> RedisSettings:
    sentinels: list[tuple[str, int]] = []
    raw = node.raw("sentinels")
    if raw is not None:
        if not isinstance(raw, list):
            raise node.error("sentinels", "must be a list of host:port strings or {host, port} mappings")
        for item in raw:
            if isinstance(item, Mapping):
                sentinels.append((str(item.get("host")), int(item.get("port", 26379))))
            elif isinstance(item, str) and re.fullmatch(r"[^:\s]+(:\d+)?", item):
                host, _, port = item.partition(":")
                sentinels.append((host, int(port or 26379)))
            else:
                raise node.error("sentinels", f"bad sentinel address {item!r}")
        if not node.has("master"):
            raise node.error("master", "is required with sentinels")
    url = node.text("url", None)
    if url is not None and not re.match(r"^(redis|rediss|unix)://", url):
        raise node.error("url", "must start with redis://, rediss:// or unix://")
    return RedisSettings(
        server=node.text("server", "localhost"),
        port=node.integer("port", 6379, minimum=1),
        password=node.secret("password"),
        db=node.integer("db", 0),
        url=url,
        data_ttl=node.integer("data_ttl", 168),
        sentinels=tuple(sentinels),
        master=node.text("master", None),
        socket_timeout=node.number("socket_timeout", 5.0),
    )


def _app(node: Node) -> AppSettings:
    def opt_int(key: str, default: int | None = None, minimum: int = 0) -> int | None:
        return node.integer(key, default, minimum=minimum)

    def req_int(key: str, default: int, minimum: int = 0) -> int:
        return node.integer(key, default, minimum=minimum)

    level = str(node.text("log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise node.error("log_level", f"must be one of DEBUG, INFO, WARNING, ERROR (got {level!r})")
    allowed = node.names("allowed_tags")
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
        site_name=node.text("site_name", "<b>vmpooler</b>"),
        logfile=node.text("logfile", None),
        log_level=level,
        clone_target=node.text("clone_target", None),
        bind=node.text("bind", "127.0.0.1"),
        port=req_int("port", 4567, minimum=0),
        max_checkout_per_request=req_int("max_checkout_per_request", 100, minimum=1),
        manager_lease_seconds=req_int("manager_lease_seconds", 30, minimum=2),
        manager_loop_seconds=node.number("manager_loop_seconds", 5.0),
        manager_backoff_max=node.number("manager_backoff_max", 60.0),
        max_vms_per_token=opt_int("max_vms_per_token", minimum=1),
    )


def _sink(node: Node, default_port: int) -> SinkSettings | None:
    if not list(node.keys()):
        return None
    if not node.has("server"):
        raise node.error("server", "is required")
    return SinkSettings(
        server=str(node.text("server", "")),
        port=node.integer("port", default_port, minimum=1),
        prefix=node.text("prefix", "vmpooler"),
    )


def _metrics(statsd: Node, graphite: Node) -> MetricsSettings:
    chosen = _sink(statsd, 8125)
    if chosen is not None:
        # statsd and graphite are mutually exclusive; statsd takes precedence.
        return MetricsSettings(statsd=chosen)
    return MetricsSettings(graphite=_sink(graphite, 2003))


def _providers(top: Node) -> dict[str, ProviderConfig]:
    providers: dict[str, ProviderConfig] = {}
    section = top.child("providers")
    for name in section.keys():
        options = section.child(name)
        kind = str(options.text("provider_class", name))
        if kind not in ("vsphere", "dummy"):
            raise section.error(name, f"unknown provider {kind!r} (known: vsphere, dummy)")
        _check_provider(options, kind)
        providers[name] = ProviderConfig(name, cast(Any, kind), MappingProxyType(options.plain()))
    legacy = top.child("vsphere")
    if list(legacy.keys()) and "vsphere" not in providers:
        # The era-A top-level `:vsphere:` section is the `vsphere` provider.
        _check_provider(legacy, "vsphere")
        providers["vsphere"] = ProviderConfig("vsphere", "vsphere", MappingProxyType(legacy.plain()))
    providers.setdefault("dummy", ProviderConfig("dummy", "dummy"))
    return providers


# Provider options with a fixed meaning; the providers (vmpoolerd/providers) document them and their
# defaults. Checked here so that a bad value is reported with its line.
_DUMMY_SECONDS = ("clone_time", "boot_time", "destroy_time")
_DUMMY_PERCENTS = ("clone_fail_percent", "destroy_fail_percent", "ready_fail_percent")


def _check_provider(options: Node, kind: str) -> None:
    ready_check = options.text("ready_check", None)
    if ready_check is not None and ready_check not in _READY_CHECKS:
        raise options.error("ready_check", f"must be one of {', '.join(_READY_CHECKS)}")
    if kind == "vsphere":
        _require(options, "server")
        options.integer("port", 443, minimum=1)
        options.number("timeout", 60.0)
        options.flag("insecure", False)
        return
    for key in _DUMMY_SECONDS:
        options.number(key, 0.0)
    for key in _DUMMY_PERCENTS:
        if options.number(key, 0.0) > 100:
            raise options.error(key, "must be a percentage from 0 to 100")


def _require(node: Node, key: str) -> None:
    if not node.has(key):
        raise node.error(key, "is required")


_POOL_KEYS = frozenset({"name", "alias", "template", "folder", "datastore", "size", "clone_target",
                        "timeout", "ready_ttl", "provider", "ready_check", "ready_check_port"})


def _pool(node: Node, providers: Mapping[str, ProviderConfig], default_provider: str) -> PoolConfig:
    if not node.has("name"):
        raise node.error("name", "is required")
    name = str(node.text("name", ""))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise node.error("name", f"{name!r} may use only letters, digits, '.', '_' and '-'")
    if not node.has("size"):
        raise node.error("size", "is required")
    provider = str(node.text("provider", default_provider))
    if provider not in providers:
        raise node.error("provider", f"unknown provider {provider!r} (configured: {', '.join(providers)})")
    if providers[provider].kind == "vsphere":
        _require(node, "template")
        _require(node, "folder")
    ready_check = node.text("ready_check", None)
    if ready_check is not None and ready_check not in _READY_CHECKS:
        raise node.error("ready_check", f"must be one of {', '.join(_READY_CHECKS)}")
    options = {k: v for k, v in node.plain().items() if k not in _POOL_KEYS}
    return PoolConfig(
        name=name,
        size=node.integer("size", 0, minimum=0),
        alias=tuple(a for a in node.names("alias") if a != name),
        template=node.text("template", None),
        folder=node.text("folder", None),
        datastore=node.text("datastore", None),
        clone_target=node.text("clone_target", None),
        timeout=node.integer("timeout", None, minimum=1),
        ready_ttl=node.integer("ready_ttl", None),
        provider=provider,
        ready_check=cast(Any, ready_check),
        ready_check_port=node.integer("ready_check_port", 22, minimum=1),
        options=MappingProxyType(options),
    )


def _pools(top: Node, providers: Mapping[str, ProviderConfig]) -> tuple[PoolConfig, ...]:
    raw = top.raw("pools")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.error("pools", "must be a list of pools")
    # Era-A configs with only the legacy vsphere section meant every pool lives in vSphere.
    default_provider = "vsphere" if "vsphere" in providers and not top.has("providers") else "dummy"
    pools: list[PoolConfig] = []
    seen: dict[str, int | None] = {}
    for index, item in enumerate(raw):
        line = item_line(raw, index)
        node = Node(item, top.source, f"pools[{index}]", line)
        pool = _pool(node, providers, default_provider)
        if pool.name in seen:
            raise node.error("name", f"duplicate pool name {pool.name!r} (first at line {seen[pool.name]})")
        seen[pool.name] = line
        pools.append(pool)
    names = set(seen)
    for index, pool in enumerate(pools):
        for alias in pool.alias:
            if alias in names:
                node = Node(raw[index], top.source, f"pools[{index}]", item_line(raw, index))
                raise node.error("alias", f"alias {alias!r} is the name of another pool")
    return tuple(pools)


def _auth(node: Node, base_dir: Path) -> AuthSettings | None:
    if not list(node.keys()):
        return None
    provider = node.text("provider", None)
    if provider == "ldap":
        ldap = node.child("ldap")
        _require(ldap, "host")
        encryption = str(ldap.text("encryption", "start_tls"))
        if encryption not in ("start_tls", "simple_tls", "none"):
            raise ldap.error("encryption", "must be start_tls, simple_tls or none")
        return AuthSettings("ldap", ldap=LdapSettings(
            host=str(ldap.text("host", "")),
            port=ldap.integer("port", 389, minimum=1),
            base=ldap.names("base"),
            user_object=ldap.names("user_object") or ("uid",),
            encryption=cast(Any, encryption),
        ))
    if provider == "users":
        users: dict[str, Secret] = {}
        inline = node.child("users")
        for user in inline.keys():
            users[user] = Secret(str(inline.raw(user)))
        file = node.text("users_file", None)
        if file is not None:
            users.update(_read_users_file(base_dir / file, node))
        if not users:
            raise node.error("users", "the users provider needs `users:` or `users_file:`")
        return AuthSettings("users", users=MappingProxyType(users))
    raise node.error("provider", f"unknown auth provider {provider!r} (known: ldap, users)")


def _read_users_file(path: Path, node: Node) -> dict[str, Secret]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise node.error("users_file", f"cannot read {path}: {err.strerror}") from None
    users: dict[str, Secret] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, digest = line.strip().partition(":")
        if not sep or not user or not digest:
            raise ConfigError("expected user:hash", source=str(path), line=number)
        users[user] = Secret(digest)
    return users


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
    data = _parse(text, source)
    top = Node(data, source, "")
    base_dir = Path(source).parent if Path(source).exists() else Path.cwd()
    sections = _apply_env(top, env)
    providers = _providers(top)
    pools = _pools(top, providers)
    aliases: dict[str, list[str]] = {}
    for pool in pools:
        for alias in pool.alias:
            aliases.setdefault(alias, []).append(pool.name)
    return Config(
        redis=_redis(sections["redis"]),
        app=_app(sections["config"]),
        pools=pools,
        providers=MappingProxyType(providers),
        metrics=_metrics(sections["statsd"], sections["graphite"]),
        auth=_auth(top.child("auth"), base_dir),
        tagfilter=MappingProxyType(_tagfilter(top.child("tagfilter"))),
        graphs=MappingProxyType(top.child("graphs").plain()),
        rate_limits=rate_limits(top.child("rate_limits"), sections["config"]),
        source=source,
        pool_names=frozenset({p.name for p in pools} | set(aliases)),
        aliases=MappingProxyType({a: tuple(ps) for a, ps in aliases.items()}),
        pool_index=MappingProxyType({p.name: p for p in pools}),
    )
