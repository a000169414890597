"""What each kind of provider may be configured with: the one place the loader checks provider entries
and pool entries against (the providers themselves, in vmpoolerd/providers, read only these).

Kept here rather than next to the providers so that the core can check a configuration without
importing them (the vSphere one pulls in pyvmomi); tests/test_config_keys.py reads the providers'
sources and fails when they read an option that is not declared here, or no longer read one that is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

# How the loader checks a value: text; a password (never shown); a TCP port; seconds (>= 0); a count
# (>= 1); a percentage (0-100); true/false; a ready check (tcp, hostname or none).
OptionType = Literal["text", "secret", "port", "seconds", "count", "percent", "flag", "ready_check"]


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    type: OptionType
    required: bool = False


@dataclass(frozen=True, slots=True)
class ProviderKind:
    # Under `providers: <name>:` (`provider_class` is read by the loader for every kind).
    options: tuple[Option, ...]
    # Keys a pool using this provider may carry besides the pool keys every pool has.
    pool_options: tuple[Option, ...] = ()
    # The original vmpooler's options for this provider and for its pools that we accept and ignore
    # (fnmatch patterns), so that its configuration files still load: see config_keys.py for why.
    original_options: tuple[str, ...] = ()
    original_pool_options: tuple[str, ...] = ()

    def names(self) -> frozenset[str]:
        return frozenset(o.name for o in self.options)


_READY_CHECK = Option("ready_check", "ready_check")  # the default ready check of the provider's pools

PROVIDER_KINDS: Mapping[str, ProviderKind] = MappingProxyType({
    "vsphere": ProviderKind(
        options=(
            Option("server", "text", required=True),
            Option("port", "port"),
            Option("username", "text"),
            Option("user", "text"),  # another name for username
            Option("password", "secret"),
            Option("insecure", "flag"),  # accept a certificate that does not verify
            Option("timeout", "seconds"),  # per vSphere call
            Option("connections", "count"),  # idle HTTPS connections kept for reuse
            Option("idle_timeout", "seconds"),  # how long one is kept idle (below servers' keep-alive)
            Option("datacenter", "text"),
            Option("clone_timeout", "seconds"),
            _READY_CHECK,
        ),
        original_options=(
            # The original's connection pool to vCenter; ours is `connections`, sized differently.
            "connection_pool_size", "connection_pool_timeout",
        ),
        original_pool_options=(
            # Per-pool placement the original's vSphere provider reads; ours places by `clone_target`
            # and `datastore`, in the provider's `datacenter`, on the template's network.
            "datacenter", "network",
            # Linked clones are always made when the template has a snapshot.
            "create_linked_clone",
            # Memory-snapshot tuning of the original's snapshot calls.
            "snapshot_mainMem_*",
        ),
    ),
    "dummy": ProviderKind(
        options=(
            Option("clone_time", "seconds"),
            Option("boot_time", "seconds"),
            Option("destroy_time", "seconds"),
            Option("clone_fail_percent", "percent"),
            Option("destroy_fail_percent", "percent"),
            Option("ready_fail_percent", "percent"),
            Option("guest_ip", "text"),
            _READY_CHECK,
        ),
        original_options=(
            # The original's dummy provider kept its VMs in a YAML file and in memory; ours keeps them
            # in Redis, with its own timing and fault injection (clone_time, clone_fail_percent, ...).
            "filename", "connection_pool_size", "connection_pool_timeout", "is_ready_timeout",
            # Its fault injection, per provider call: *_max_time, *_fail_percent and friends.
            "migratevm_*", "getvm_*", "createvm_*", "createdisk_*", "createsnapshot_*",
            "revertsnapshot_*", "destroyvm_*", "vmready_fail_percent",
        ),
    ),
})
