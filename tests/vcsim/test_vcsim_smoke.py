"""Smoke test of the vCenter simulator in tests/vcsim (see README.md there).

Builds it with scripts/build-vcsim, starts it on free loopback ports and checks, through pyVmomi,
the clone behaviour vmpooler relies on: power-on, guest hostname from guestinfo.hostname, injected
failures, clone delay and the control endpoint.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from tests.vcsim.server import VcsimServer, can_build

pytestmark = pytest.mark.vcsim

DC = "DC0"
TEMPLATE = "templates/centos-6-x86_64"
POOL_FOLDER = "vmpooler/pool1"
RESOURCE_POOL = "DC0/host/DC0_C0/Resources"


@pytest.fixture(scope="module")
def vcsim() -> Iterator[VcsimServer]:
    # A missing toolchain is a broken set-up, not a reason to pass: scripts/test installs it.
    assert can_build(), "needs Debian's golang-go and golang-github-vmware-govmomi-dev (scripts/test installs them)"
    server = VcsimServer(templates=[TEMPLATE], folders=[POOL_FOLDER, "vmpooler/pool2"]).start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def si(vcsim: VcsimServer) -> Iterator[Any]:
    conn = SmartConnect(
        host=vcsim.host, port=vcsim.port, user=vcsim.user, pwd=vcsim.password, disableSslCertValidation=True
    )
    yield conn
    Disconnect(conn)


@pytest.fixture
def sim(vcsim: VcsimServer) -> Iterator[VcsimServer]:
    """The shared simulator, with clone delay and failures reset around the test."""
    vcsim.set_clone_fail(0)
    vcsim.set_clone_delay(0)
    yield vcsim
    vcsim.set_clone_fail(0)
    vcsim.set_clone_delay(0)


def find(si: Any, path: str) -> Any:
    return si.content.searchIndex.FindByInventoryPath(f"{DC}/{path}")


def start_clone(si: Any, name: str, power_on: bool = True, hostname: str | None = None) -> Any:
    template = find(si, f"vm/{TEMPLATE}")
    folder = find(si, f"vm/{POOL_FOLDER}")
    pool = si.content.searchIndex.FindByInventoryPath(RESOURCE_POOL)
    assert template is not None and folder is not None and pool is not None
    config = vim.vm.ConfigSpec()
    if hostname:
        config.extraConfig = [vim.option.OptionValue(key="guestinfo.hostname", value=hostname)]
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=pool), powerOn=power_on, template=False, config=config
    )
    return template.CloneVM_Task(folder=folder, name=name, spec=spec)


def test_control_endpoint(sim: VcsimServer) -> None:
    assert sim.control("/healthz", method="GET").strip() == "ok"
    assert json.loads(sim.control("/clone-fail?percent=30"))["clone_fail_percent"] == 30
    assert json.loads(sim.control("/clone-delay?ms=250"))["clone_delay_ms"] == 250
    with pytest.raises(urllib.error.HTTPError) as err:
        sim.control("/clone-fail?percent=101")
    assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        sim.control("/clone-delay?ms=5", method="GET")
    assert err.value.code == 405


def test_template_and_folders_exist(si: Any) -> None:
    template = find(si, f"vm/{TEMPLATE}")
    assert template is not None
    assert template.config.template is True
    assert find(si, "vm/vmpooler/pool2") is not None


def test_wrong_password_is_refused(vcsim: VcsimServer) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(
            host=vcsim.host, port=vcsim.port, user=vcsim.user, pwd="wrong", disableSslCertValidation=True
        )


def test_clone_powers_on_and_reports_hostname(si: Any, sim: VcsimServer) -> None:
    task = start_clone(si, "abc123", hostname="abc123")
    WaitForTask(task)
    vm = task.info.result
    assert isinstance(vm, vim.VirtualMachine)
    assert vm.name == "abc123"
    assert vm.runtime.powerState == "poweredOn"
    assert vm.guest.hostName == "abc123"
    assert vm.summary.guest.hostName == "abc123"
    assert vm.guest.ipAddress.startswith("127.0.0.")
    assert vm.guest.toolsRunningStatus == "guestToolsRunning"
    assert find(si, f"vm/{POOL_FOLDER}/abc123") == vm


def test_clone_without_power_on_stays_off(si: Any, sim: VcsimServer) -> None:
    task = start_clone(si, "cold1", power_on=False, hostname="cold1")
    WaitForTask(task)
    vm = task.info.result
    assert vm.runtime.powerState == "poweredOff"
    assert not vm.guest.hostName


def test_injected_failure_creates_no_vm(si: Any, sim: VcsimServer) -> None:
    before = sim.state()
    sim.set_clone_fail(100)
    task = start_clone(si, "fail1", hostname="fail1")
    with pytest.raises(vmodl.fault.SystemError):
        WaitForTask(task)
    assert task.info.state == "error"
    assert "injected" in task.info.error.msg
    assert find(si, f"vm/{POOL_FOLDER}/fail1") is None
    assert sim.state()["clones_failed"] == before["clones_failed"] + 1

    sim.set_clone_fail(0)
    task = start_clone(si, "fail1", hostname="fail1")
    WaitForTask(task)
    assert task.info.state == "success"


def test_clone_delay_runs_in_the_task(si: Any, sim: VcsimServer) -> None:
    sim.set_clone_delay(700)
    t0 = time.monotonic()
    task = start_clone(si, "slow1", hostname="slow1")
    # Like vCenter, the call answers at once with an unfinished task.
    assert time.monotonic() - t0 < 0.5
    assert task.info.state in ("queued", "running")
    WaitForTask(task)
    assert 0.7 <= time.monotonic() - t0 < 5
    assert task.info.result.guest.hostName == "slow1"


def test_delayed_clones_overlap(si: Any, sim: VcsimServer) -> None:
    sim.set_clone_delay(500)
    t0 = time.monotonic()
    tasks = [start_clone(si, f"par{i}", hostname=f"par{i}") for i in range(5)]
    for task in tasks:
        WaitForTask(task)
    # Five clones of one template in parallel take about one delay, not five.
    assert time.monotonic() - t0 < 2
    assert sorted(t.info.result.guest.hostName for t in tasks) == [f"par{i}" for i in range(5)]


def test_tasks_complete_for_every_session(si: Any, sim: VcsimServer) -> None:
    # Each connection waits on its own task at the same time: this simulator version delivers
    # property-collector updates to one session only, which main.go works around.
    other = SmartConnect(
        host=sim.host, port=sim.port, user=sim.user, pwd=sim.password, disableSslCertValidation=True
    )
    try:
        sim.set_clone_delay(300)
        tasks = [start_clone(conn, f"sess{i}", hostname=f"sess{i}") for i, conn in enumerate((si, other))]
        errors: list[BaseException] = []

        def wait(task: Any) -> None:
            try:
                WaitForTask(task)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=wait, args=(task,), daemon=True) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads), "WaitForTask hung"
        assert not errors
        assert [t.info.result.guest.hostName for t in tasks] == ["sess0", "sess1"]
    finally:
        Disconnect(other)
