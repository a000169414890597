"""What the manager needs from a place that runs VMs (vSphere, or the dummy provider).

Methods are blocking: the manager calls them in a bounded thread pool. Inventory is read per pool in
one batched call (`list_vms`), never one call per VM; a provider that can also read every pool's at once
(`Listing`: vSphere, one property query for all the folders) is asked once per pass, whatever the number
of pools.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

# How the manager decides a VM has booted: a TCP port answers (on hostname.domain, else the guest IP),
# the guest reports the expected hostname, or no check at all (powered on is enough).
ReadyCheck = Literal["tcp", "hostname", "none"]


class ProviderError(Exception):
    """The provider failed an operation (the VM may or may not exist afterwards)."""


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached at all (vCenter down, session lost): back off and retry."""


class OutcomeUnknown(ProviderError):
    """A clone or destroy was asked of the provider and its answer lost (connection reset, vCenter
    restarted), and the provider could not find out what became of it: only a later look can tell. A
    clone's pending record stays for the reconciliation, which adopts the VM if it turns up."""


class NameTaken(ProviderError):
    """The provider refused the clone's name (a VM or a leftover folder of that name): it made nothing,
    and the clone can be tried again under another name."""


class ProviderLoginRefused(ProviderUnavailable):
    """The provider answered but refused the configured credentials (vSphere's InvalidLogin): retrying
    cannot help until the configuration is fixed, so health reports say "cannot log in", not "unreachable"."""


@dataclass(frozen=True, slots=True)
class VmFacts:
    """What the provider knows of one VM, read in the pool's batched inventory query."""

    name: str
    powered_on: bool
    guest_hostname: str | None = None
    guest_ip: str | None = None
    host: str | None = None  # the hypervisor host it runs on
    # The identity of the pooler that cloned it (CloneSpec.pooler_id), read back from the VM; None when it
    # carries no such mark (made by hand, by the original vmpooler, or by a version without marks).
    pooler_id: str | None = None
    # Where it was found when it is not in its pool's folder (`Locating.locate`); None in the pool folder.
    folder: str | None = None


@dataclass(frozen=True, slots=True)
class Located:
    """What `Locating.locate` found."""

    found: Mapping[str, VmFacts]  # the VMs asked for, by name, wherever they are (VmFacts.folder)
    # A clone of the pool's template that this provider is not waiting for is queued or running (one
    # whose answer was lost, or another pooler's): a pending VM not found may still be on its way.
    cloning: bool


@dataclass(frozen=True, slots=True)
class CloneSpec:
    name: str
    template: str
    folder: str
    datastore: str | None = None
    target: str | None = None  # a cluster (least-loaded host chosen) or host
    annotation: str = ""  # JSON notes on the VM (the vSphere provider adds `created_by`)
    linked: bool = True  # a linked clone when the template allows it (it has a snapshot)
    timeout: float = 900.0  # seconds the clone may take before it counts as failed
    pooler_id: str | None = None  # the cloning pooler's identity, to mark the VM with (VmFacts.pooler_id)


@runtime_checkable
class Provider(Protocol):
    name: str
    # The ready check of pools that do not choose one (`ready_check:` of the pool, else this).
    ready_check: ReadyCheck

    def list_vms(self, pool: str, folder: str | None) -> dict[str, VmFacts]:
        """Every VM in the pool's folder, keyed by name, in one batched query. Templates are left out.
        Raises ProviderError (never returns an empty result) when the folder cannot be read: the manager
        treats a VM missing from this result as gone."""
        ...

    def clone(self, pool: str, spec: CloneSpec) -> None:
        """Clone and power on; returns when the clone exists (it may still be booting)."""
        ...

    def destroy(self, pool: str, name: str) -> None:
        """Power off if needed and delete; a VM that is already gone is not an error."""
        ...

    def snapshot(self, pool: str, name: str, snapshot: str) -> None: ...

    def revert(self, pool: str, name: str, snapshot: str) -> None: ...

    def add_disk(self, pool: str, name: str, size_gb: int, datastore: str | None) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Listing(Protocol):
    """A provider that reads the inventories of many pools in one query."""

    def list_pools(self, folders: Mapping[str, str | None]) -> dict[str, dict[str, VmFacts] | ProviderError]:
        """For each pool of `folders` (pool -> its folder, as `list_vms` takes them): what `list_vms` would
        return for it, or the ProviderError it would raise (one pool's folder gone fails that pool alone).
        Raises what `list_vms` raises when no pool could be read (ProviderUnavailable...)."""
        ...


@runtime_checkable
class Locating(Protocol):
    """A provider that can look beyond a pool's folder (vSphere): the manager asks before it forgets a VM
    that is missing from the folder, or a pending VM whose clone it does not know to be over."""

    def locate(self, pool: str, names: Collection[str]) -> Located:
        """The VMs named `names` anywhere in the provider, and whether a clone that could make one of them
        is still running (read first: a clone that ends meanwhile shows its VM)."""
        ...
