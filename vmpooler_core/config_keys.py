"""Which keys a configuration may hold that the loader does not read: the original vmpooler's.

The keys we use are the ones the loader reads (config_node.Node records them). Any other key is a
mistake (a typo, a key at the wrong level) and an error, except the original's keys listed below: it
accepts them, we have no use for them, and its real configuration files must still start here. Those
load with one warning naming them all. Patterns are fnmatch's (`dlq_*`). Sources: the contract's
sections A5 (2016) and B5 (today); provider options are in provider_options.py.
"""

from __future__ import annotations

import logging

from .config_node import Node

log = logging.getLogger("vmpooler.config")

# Top-level sections.
TOP = (
    "prometheus",  # a Prometheus metrics sink; ours serves /metrics whatever the sink
    "tracing",  # OpenTelemetry export to Jaeger
)

# `:config:`.
CONFIG = (
    # A separate limit on on-demand clones: ours share the `task_limit` slots with the pools' refills.
    "ondemand_clone_limit",
    # Migration of checked-out VMs between hosts at checkout.
    "migration_limit",
    # A second, earlier pending timeout that only sets a flag.
    "timeout_notification",
    # Retries of provider calls; ours back off up to `manager_backoff_max`.
    "max_tries", "retry_factor",
    # vSphere folder and template preparation; we clone into existing folders, linked when possible.
    "create_folders", "create_template_delta_disks", "create_linked_clones",
    # Usage statistics, per-request logging.
    "usage_stats", "request_logger",
    # Destroying VMs and folders the configuration does not name.
    "purge_unconfigured_resources", "purge_unconfigured_folders",
    # The original's adaptive per-pool loop; ours is `manager_loop_seconds`.
    "check_loop_delay_min", "check_loop_delay_max", "check_loop_delay_decay",
    "check_ready_vm_hostname_for_mismatch",
    # Today's reliability switches (dead-letter queue, purges, health checks, circuit breaker,
    # adaptive timeouts, connection-pool tuning): our manager does these its own way, unconfigured.
    "dlq_*", "purge_*", "max_*_age", "health_check_*", "health_thresholds", "circuit_breaker_*",
    "adaptive_timeout_*", "connection_pool_timeout_*", "connection_pool_monitor_*",
)

# `:redis:`: the original's client pool and reconnection; ours pools per process and retries on its own.
REDIS = ("connection_pool_size", "connection_pool_timeout", "reconnect_attempts")

# `:auth: :ldap:`: a service account that searches for the user before the bind; we bind directly as
# `<user_object>=<user>,<base>` for each base and user object in turn.
LDAP = ("service_account_hash",)

# Every provider entry, whatever its kind (each kind's own are in provider_options.py).
PROVIDER = (
    "purge_unconfigured_resources", "purge_unconfigured_folders",
    "resources_allowlist", "folder_whitelist",  # what the purge spares
    "skip_dns_check_before_creating_vm",  # we never look new hostnames up in DNS
)

# Every pool entry, whatever its provider.
POOL = (
    "timeout_notification",
    "check_loop_delay_min", "check_loop_delay_max", "check_loop_delay_decay",
    "check_hostname_for_mismatch",  # our hostname ready check is chosen with `ready_check`
)


def check(top: Node) -> tuple[str, ...]:
    """After the load: raise ConfigError for the first key (in file order) that nothing read and that
    is not the original's; return the original's unused keys (as dotted paths) and log them, once."""
    unknown: list[tuple[Node, str]] = []
    unused: list[str] = []
    for node, key in top.unread():
        if node.is_unused(key):
            unused.append(node.where(key))
        else:
            unknown.append((node, key))
    if unknown:
        # The main file's first, then the extra files' (config_extra.py), each in line order.
        unknown.sort(key=lambda found: (found[0].source_of(found[1]) != top.source, found[0].line_of(found[1]) or 0))
        node, key = unknown[0]
        others = [n.where(k) for n, k in unknown[1:]]
        also = f" (also unknown: {', '.join(others)})" if others else ""
        raise node.unknown(key, also)
    if unused:
        log.warning("%s: keys of the original vmpooler that this one does not use, ignored: %s",
                    top.source, ", ".join(unused))
    return tuple(unused)

