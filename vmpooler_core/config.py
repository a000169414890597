"""The typed, frozen configuration that every component receives.

Built once by `vmpooler_core.config_loader.load` and passed in; there is no module-level config.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# `redis: durability`: what a checkout or a return waits for before it is answered (scripts.py).
DURABILITY = ("none", "aof", "replica")


@dataclass(frozen=True, slots=True)
class Secret:
    """A password: never shown by repr, str or logs; `.reveal()` gives the value to the one caller
    that must send it (a Redis or vCenter client)."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where Redis is (one of: `url`, `sentinels` with `master`, `unix_socket`, or `server`/`port`) and
    how to log in and talk to it. The daemon and the CLI read the same settings the same way."""

    server: str = "localhost"
    port: int = 6379
    username: str | None = None  # an ACL user (Redis 6+); None: the default user
    password: Secret | None = None
    db: int = 0
    url: str | None = None
    data_ttl: int = 168  # hours a destroyed VM's hash is kept
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    sentinel_username: str | None = None  # the sentinels' own ACL user, when they require one
    sentinel_password: Secret | None = None  # the sentinels' `requirepass` (or their ACL user's password)
    unix_socket: str | None = None  # a path: Redis's `unixsocket`
    # TLS, for the data nodes and the sentinels alike. The server's certificate is always verified
    # (against `ssl_ca_certs`, else the system's CAs); a client certificate is sent when one is given.
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    socket_timeout: float = 5.0
    # "none", "aof" (the AOF fsync: WAITAOF, Redis 7.2+) or "replica" (every replica: WAIT).
    durability: str = "none"

    def __repr__(self) -> str:
        # A `url` may carry the password (redis://:secret@host); repr(config) must not show it.
        return (f"RedisSettings({self.describe()!r}, username={self.username!r}, password={self.password!r}, "
                f"sentinel_username={self.sentinel_username!r}, sentinel_password={self.sentinel_password!r}, "
                f"ssl_ca_certs={self.ssl_ca_certs!r}, ssl_certfile={self.ssl_certfile!r}, "
                f"ssl_check_hostname={self.ssl_check_hostname}, data_ttl={self.data_ttl}, "
                f"socket_timeout={self.socket_timeout})")

    @property
    def tls(self) -> bool:
        return self.ssl or bool(self.url and self.url.startswith("rediss://"))

    def describe(self) -> str:
        """Where Redis is, for messages: never includes the password."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {hosts} master {self.master}{' (TLS)' if self.ssl else ''}"
        if self.url:
            # The password may be in the user part (up to the last "@": an unescaped password may hold
            # "@" or "/") or, as redis-py reads it there too, in the query.
            masked = re.sub(r"^([a-z]+://).*@", r"\1***@", self.url, flags=re.DOTALL)
            return re.sub(r"(password=)[^&]*", r"\1***", masked)
        if self.unix_socket:
            return f"unix://{self.unix_socket}?db={self.db}"
        return f"{'rediss' if self.ssl else 'redis'}://{self.server}:{self.port}/{self.db}"


@dataclass(frozen=True, slots=True)
class AppSettings:
    """The `config:` section."""

    domain: str | None = None
    prefix: str = ""
    task_limit: int = 10
    timeout: int = 15  # minutes a pending VM may take to become ready
    vm_checktime: int = 1  # minutes between re-checks of a ready VM
    vm_lifetime: int = 24  # hours a checked-out VM lives
    vm_lifetime_auth: int | None = None
    max_lifetime_upper_limit: int | None = None
    ready_ttl: int | None = None  # minutes a VM may stay ready; None = forever
    allowed_tags: tuple[str, ...] | None = None
    # Tags: the most one VM may carry, and the longest name and value (the original had no limits; today's
    # checks 50 and 255 characters, not the count).
    max_tags_per_vm: int = 100
    max_tag_name_length: int = 50
    max_tag_value_length: int = 255
    # Who may tag a VM checked out with a token: anyone (as the original) or only with that token.
    tag_owned_vms: Literal["anyone", "owner"] = "anyone"
    site_name: str = "<b>vmpooler</b>"
    logfile: str | None = None
    log_level: str = "INFO"
    access_log: bool = False  # one line per HTTP request (logger vmpooler.access, at INFO)
    clone_target: str | None = None
    bind: str = "127.0.0.1"
    port: int = 4567
    max_checkout_per_request: int = 100
    manager_lease_seconds: int = 30  # a dead manager's pools are taken over within about this time
    manager_loop_seconds: float = 5.0  # seconds between the manager's passes over all pools
    manager_backoff_max: float = 60.0  # longest wait (seconds) between retries of a Redis or provider outage
    max_vms_per_token: int | None = None  # VMs one token may hold checked out at once; None = no cap
    # This pooler's identity, marked on each clone; None: the one stored in Redis (made on the first start).
    pooler_id: str | None = None
    # Destroy VMs found in a pool folder that Redis does not know and that carry no pooler mark at all
    # (made by hand, by the original vmpooler). Off: they are left alone and reported once.
    purge_unconfigured: bool = False
    # The pool configuration API of API v3 (/api/v3/config/..., /api/v3/poolreset): off unless set, as in
    # the original.
    experimental_features: bool = False


@dataclass(frozen=True, slots=True)
class OnDemandSettings:
    """On-demand requests (API v3's /ondemandvm), from the `config:` section with the original's keys and
    defaults. Their clones share the `task_limit` slots with the pools' refills."""

    max_instances_per_request: int = 10  # max_ondemand_instances_per_request: the most of one name per request
    request_ttl: int = 5  # ondemand_request_ttl: minutes a request may take to be filled before it fails
    max_vm_retries: int = 3  # clones of one request that may fail (or time out booting) before it fails
    # backend_weight: clone target -> weight, for the choice between the pools behind an alias
    backend_weight: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class DemandSettings:
    """The `demand:` section: how the pools with a `max_size` count and forecast demand (demand.py)."""

    bucket_seconds: float = 60.0  # the time buckets demand is counted in
    window_seconds: float = 10800.0  # how far back the forecast looks (and how long a burst is remembered)
    day_seconds: float = 86400.0  # the period of the daily profile (shorter only to replay a day faster)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests per `period` seconds (GCRA: spread evenly, bursts up to `limit`);
    `limit` 0 means no limit."""

    limit: int
    period: int


@dataclass(frozen=True, slots=True)
class ClassLimits:
    """One request class's limits: for a request with a known token, counted against the token; for
    any other, against the client's address."""

    per_token: Rate
    per_address: Rate


# Request classes (vmpoolerd/api/limits.py sorts requests into them), each with the original's default
# limits (its vm_creation, vm_deletion, authenticated and global_per_ip).
RATE_CLASSES = ("checkout", "return", "other")
DEFAULT_RATE_LIMITS: Mapping[str, ClassLimits] = MappingProxyType({
    "checkout": ClassLimits(Rate(20, 60), Rate(20, 60)),
    "return": ClassLimits(Rate(50, 60), Rate(50, 60)),
    "other": ClassLimits(Rate(500, 60), Rate(100, 60)),
})


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """The `rate_limits:` section. Off by default, as in the original (opt-in there too): vmpooler
    serves CI fleets, often many jobs behind one NAT address or one shared token, and a limit tight
    enough to stop abuse would throttle them until an admin has sized it for the site."""

    enabled: bool = False
    classes: Mapping[str, ClassLimits] = field(default_factory=lambda: DEFAULT_RATE_LIMITS)
    # Behind a reverse proxy every request comes from the proxy's address: name the header in which the
    # proxy puts the client's (its last entry is used: the one the proxy itself added).
    address_header: str | None = None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The `http:` section: how long a client may take to send a request, and how many connections it
    may hold (vmpoolerd/http_limits.py). The original (Puma or Thin) had its server's defaults."""

    header_timeout: float = 10.0  # seconds from a connection (or a request's first byte) to its full head
    body_timeout: float = 30.0  # seconds from the end of a request's head to the end of its body
    keep_alive_timeout: int = 5  # seconds an idle kept-alive connection stays open
    # Open connections at once, in all (None: from the process's open-files limit, keeping a reserve for
    # Redis, LDAP and logs) and from one client address (0: no cap; behind a proxy all come from its).
    max_connections: int | None = None
    max_connections_per_address: int = 256


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str
    size: int
    alias: tuple[str, ...] = ()
    template: str | None = None
    folder: str | None = None
    datastore: str | None = None
    clone_target: str | None = None
    timeout: int | None = None
    ready_ttl: int | None = None
    provider: str = "dummy"
    ready_check: Literal["tcp", "hostname", "none"] | None = None
    ready_check_port: int = 22
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    dns_plugin: str | None = None  # the `dns_configs:` entry naming the pool's domain
    # The pool's DNS domain: its dns_plugin's, else `config: domain`; API v3's host names are
    # `<host>.<domain>` (API v1 keeps short names and its one `domain` key).
    domain: str | None = None
    # Sized to demand between `size` (the floor) and this (vmpooler_core/demand.py); None: a fixed size.
    max_size: int | None = None


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """One `dns_configs:` entry. Only the domain is used: this pooler manages no DNS records (the
    original's `dynamic-dns` class does not either; its plugins' other classes are not supported)."""

    name: str
    dns_class: str
    domain: str


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: Literal["vsphere", "dummy"]
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    max_vms: int | None = None  # the most VMs its pools sized to demand may grow it to (None: no cap)


@dataclass(frozen=True, slots=True)
class SinkSettings:
    server: str
    port: int
    prefix: str = "vmpooler"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """At most one of statsd and graphite is set: statsd wins when both are configured."""

    statsd: SinkSettings | None = None
    graphite: SinkSettings | None = None


Encryption = Literal["start_tls", "simple_tls", "none"]


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """`auth: ldap:`. Each host and port in turn (every combination, in order) until one answers with a
    verdict; on each, a simple bind as `<user_object>=<user>,<base>` for every base and user object."""

    host: tuple[str, ...]
    port: tuple[int, ...] = (389,)
    base: tuple[str, ...] = ()
    user_object: tuple[str, ...] = ("uid",)
    encryption: Encryption = "start_tls"
    # The directory's certificate is verified (against `ca_file`, else the system's CAs) unless
    # `verify_certificate: false`, which is logged at start-up: whoever sits between reads every password.
    ca_file: str | None = None
    verify_certificate: bool = True
    timeout: int = 5  # whole seconds for the connection and for each answer (ldap3 takes no fraction)


@dataclass(frozen=True, slots=True)
class FailedLogins:
    """`auth: failed_logins:`. Failures are counted per user name and per client address; after `allowed`
    of them each further attempt waits 1, 2, 4... seconds (up to the maximum of its kind) after the last,
    and is answered 429 before then. A count is forgotten `forget_after` seconds after its last failure.
    The user's maximum is the lower: anyone may fail logins in someone else's name."""

    allowed: int = 5
    max_delay_user: int = 60
    max_delay_address: int = 900
    forget_after: int = 900


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # "dummy": the original's test provider (any user whose password differs from the name), only with
    # VMPOOLER_DEBUG=true, as the original required.
    provider: Literal["ldap", "users", "dummy"]
    ldap: LdapSettings | None = None
    # user -> password hash ("pbkdf2_sha256$iterations$salt$hash"), from `users:` or `users_file:`
    users: Mapping[str, Secret] = field(default_factory=lambda: _EMPTY)
    failed_logins: FailedLogins = field(default_factory=FailedLogins)


@dataclass(frozen=True)
class Config:
    redis: RedisSettings
    app: AppSettings
    pools: tuple[PoolConfig, ...]
    providers: Mapping[str, ProviderConfig]
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    auth: AuthSettings | None = None
    tagfilter: Mapping[str, re.Pattern[str]] = field(default_factory=lambda: _EMPTY)
    graphs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    dns_configs: Mapping[str, DnsConfig] = field(default_factory=lambda: _EMPTY)
    http: HttpSettings = field(default_factory=HttpSettings)
    ondemand: OnDemandSettings = field(default_factory=OnDemandSettings)
    demand: DemandSettings = field(default_factory=DemandSettings)
    source: str = "<defaults>"
    loaded_at: float = field(default_factory=time.time)
    # Derived at load, never edited afterwards.
    pool_names: frozenset[str] = frozenset()
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    pool_index: Mapping[str, PoolConfig] = field(default_factory=lambda: _EMPTY)
    demand_pools: frozenset[str] = frozenset()  # the pools sized to demand (with a `max_size`)

    def pool(self, name: str) -> PoolConfig:
        return self.pool_index[name]

    def with_pools(self, pools: tuple[PoolConfig, ...]) -> Config:
        """This configuration with these pools, and what is derived from them."""
        aliases: dict[str, list[str]] = {}
        for pool in pools:
            for alias in pool.alias:
                aliases.setdefault(alias, []).append(pool.name)
        return replace(self, pools=pools, pool_names=frozenset({p.name for p in pools} | set(aliases)),
                       aliases=MappingProxyType({a: tuple(ps) for a, ps in aliases.items()}),
                       pool_index=MappingProxyType({p.name: p for p in pools}),
                       demand_pools=frozenset(p.name for p in pools if p.max_size is not None))

    @property
    def demand_width(self) -> float | None:
        """The width of the buckets the API counts demand in; None when no pool is sized to demand."""
        return self.demand.bucket_seconds if self.demand_pools else None

    def is_known(self, name: str) -> bool:
        return name in self.pool_names

    def candidates(self, name: str) -> tuple[str, ...]:
        """Pools that may serve a request for `name`: the pool itself first, then alias targets."""
        own = (name,) if name in self.pool_index else ()
        return own + tuple(p for p in self.aliases.get(name, ()) if p != name)

    @property
    def auth_enabled(self) -> bool:
        return self.auth is not None

    def lifetime_hours(self, stored: str | None) -> int:
        if stored:
            try:
                return int(float(stored))
            except ValueError:
                pass
        return self.app.vm_lifetime
