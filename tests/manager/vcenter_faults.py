"""What the tests of a vCenter behind a faulty network share: one simulator per module (each test gets
pool folders of its own in it), a fault-injecting proxy per test in front of it (tests/faultproxy.py),
providers and configurations pointed at the proxy, and looks at the simulator that bypass the proxy."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEMPLATE, make_config
from tests.faultproxy import FaultProxy
from tests.vcsim.server import VcsimServer
from vmpooler_core.config import Config
from vmpoolerd.providers.vsphere import VsphereProvider

FOLDERS = 24  # pool folders made in the shared simulator; each test takes fresh ones
_next = itertools.count()


def sim_fixture() -> Iterator[VcsimServer]:
    if os.environ.get("VMPOOLER_SKIP_VCSIM") == "1":
        pytest.skip("VMPOOLER_SKIP_VCSIM=1")
    folders = [f"vmpooler/f{i}" for i in range(FOLDERS)] + [f"vmpooler/elsewhere{i}" for i in range(4)]
    sim = VcsimServer(templates=[TEMPLATE], folders=folders).start()
    yield sim
    sim.stop()


def fresh_folder() -> str:
    index = next(_next)
    assert index < FOLDERS, "raise FOLDERS: every test needs folders of its own"
    return f"vmpooler/f{index}"


def provider_yaml(proxy: FaultProxy, sim: VcsimServer, **options: object) -> str:
    settings = {"timeout": 5, "ready_check": "hostname", **options}
    return "\n".join([":providers:", "  :vsphere:", f"    server: {proxy.host}", f"    port: {proxy.port}",
                      f"    username: {sim.user}", f"    password: {sim.password}", "    insecure: true",
                      *(f"    {k}: {v}" for k, v in settings.items())])


def pool_yaml(name: str, folder: str, size: int = 2, **extra: object) -> str:
    return "\n".join([f"  - name: {name}", f"    size: {size}", f"    template: {TEMPLATE}",
                      f"    folder: {folder}", "    provider: vsphere",
                      *(f"    {k}: {v}" for k, v in extra.items())]) + "\n"


def fault_config(proxy: FaultProxy, sim: VcsimServer, pools: str, provider: dict[str, object] | None = None,
                 **app: object) -> Config:
    settings = {"task_limit": 4, "vm_checktime": 0, "manager_lease_seconds": 5, "manager_loop_seconds": 0.2,
                "manager_backoff_max": 0.3, **app}
    return make_config("\n".join([":config:", *(f"  {k}: {v}" for k, v in settings.items()),
                                  provider_yaml(proxy, sim, **(provider or {})), ":pools:", pools]))


def direct(config: Config) -> VsphereProvider:
    """A provider of the test's own (through the proxy too: the proxy is the only way in for the daemon,
    the test reads through its own connections, which no fault is aimed at)."""
    return VsphereProvider(config.providers["vsphere"], config.pool_index)


def vm_names(sim: VcsimServer, folder: str) -> set[str]:
    """The VMs in `folder`, read straight from the simulator (no proxy)."""
    from pyVim.connect import Disconnect, SmartConnect

    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                      disableSslCertValidation=True)
    try:
        found: Any = si.content.searchIndex.FindByInventoryPath(f"DC0/vm/{folder}")
        return {child.name for child in found.childEntity}
    finally:
        Disconnect(si)


def end_sessions(sim: VcsimServer) -> None:
    """vCenter ends every session but the one asking (its idle timeout, a restart of its session service)."""
    from pyVim.connect import Disconnect, SmartConnect

    admin = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                         disableSslCertValidation=True)
    try:
        manager = admin.content.sessionManager
        manager.TerminateSession([s.key for s in manager.sessionList if s.key != manager.currentSession.key])
    finally:
        Disconnect(admin)
