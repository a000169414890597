"""The places VMs run: vSphere (pyvmomi) and the dummy provider, behind `vmpooler_core.provider.Provider`.

`build_providers(config)` makes one provider per `providers:` entry of the configuration, each given only
its own options and the pools that use it (never the whole configuration).
"""

from __future__ import annotations

from collections.abc import Mapping

from vmpooler_core.config import Config, PoolConfig
from vmpooler_core.provider import Provider
from vmpooler_core.redis_client import connect_blocking

from .dummy import DummyProvider

__all__ = ["DummyProvider", "build_providers", "close_providers"]


def build_providers(config: Config) -> dict[str, Provider]:
    """Providers by name. The dummy provider keeps its VMs on the configured Redis (`config.redis`),
    through a blocking client of its own: providers run in the manager's threads."""
    providers: dict[str, Provider] = {}
    for name, settings in config.providers.items():
        pools: Mapping[str, PoolConfig] = {p.name: p for p in config.pools if p.provider == name}
        if settings.kind == "vsphere":
            # Imported only when configured: pyvmomi costs start-up time and memory.
            from .vsphere import VsphereProvider

            providers[name] = VsphereProvider(settings, pools)
        else:
            providers[name] = DummyProvider(settings, connect_blocking(config.redis), pools)
    return providers


def close_providers(providers: Mapping[str, Provider]) -> None:
    """Log out of vCenter sessions and close the dummy providers' clients."""
    for provider in providers.values():
        provider.close()
