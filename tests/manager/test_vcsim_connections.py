"""The vSphere provider through a faulty network (tests/faultproxy.py in front of the simulator): idle
connections the server closed, answers lost after vCenter did the work, requests that never arrived,
stalls, refused connections and expired sessions. Nothing fails that vCenter did, nothing is done twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.conftest import TEMPLATE
from tests.faultproxy import Fault, FaultProxy, wait_for
from tests.manager import vcenter_faults as vf
from tests.vcsim.server import VcsimServer
from vmpooler_core.provider import CloneSpec, ProviderUnavailable
from vmpoolerd.providers.vsphere import VsphereProvider

pytestmark = pytest.mark.vcsim


@pytest.fixture(scope="module")
def sim() -> Iterator[VcsimServer]:
    yield from vf.sim_fixture()


@pytest.fixture
def proxy(sim: VcsimServer) -> Iterator[FaultProxy]:
    with FaultProxy(sim.host, sim.port).start() as proxy:
        yield proxy


@pytest.fixture
def folder() -> str:
    return vf.fresh_folder()


@pytest.fixture
def provider(proxy: FaultProxy, sim: VcsimServer, folder: str) -> Iterator[VsphereProvider]:
    made = vf.direct(vf.fault_config(proxy, sim, vf.pool_yaml("p", folder), provider={"timeout": 2}))
    yield made
    made.close()


def spec(name: str, folder: str) -> CloneSpec:
    return CloneSpec(name=name, template=TEMPLATE, folder=folder, pooler_id="ours")


def clones(sim: VcsimServer) -> int:
    return int(sim.state()["clones_started"])


def test_connections_the_server_closed_are_not_used(provider: VsphereProvider, proxy: FaultProxy,
                                                    sim: VcsimServer, folder: str) -> None:
    provider.list_vms("p", folder)
    proxy.idle_close = 0.2  # the server (or a proxy in front of it) drops connections idle for 0.2 s
    wait_for(lambda: proxy.connections() == 0, 5, "the idle connections closed by the server")
    before = clones(sim)
    provider.clone("p", spec("vm-idle", folder))
    wait_for(lambda: proxy.connections() == 0, 5, "the idle connections closed by the server")
    provider.destroy("p", "vm-idle")
    assert proxy.calls("CloneVM_Task") == 1 and proxy.calls("Destroy_Task") == 1, "each sent once"
    assert clones(sim) == before + 1 and "vm-idle" not in vf.vm_names(sim, folder)


def test_a_clone_whose_answer_was_lost_is_adopted(provider: VsphereProvider, proxy: FaultProxy, sim: VcsimServer,
                                                  folder: str, caplog: pytest.LogCaptureFixture) -> None:
    sim.set_clone_delay(300)  # still running when the provider looks
    try:
        before = clones(sim)
        proxy.add(Fault("CloneVM_Task", "lose"))
        provider.clone("p", spec("vm-lost", folder))
    finally:
        sim.set_clone_delay(0)
    assert clones(sim) == before + 1, "made once, not again"
    assert provider.list_vms("p", folder)["vm-lost"].pooler_id == "ours"
    assert any("was made (its answer was lost): adopted" in r.getMessage() for r in caplog.records)


def test_a_clone_that_never_arrived_is_sent_again(provider: VsphereProvider, proxy: FaultProxy, sim: VcsimServer,
                                                  folder: str) -> None:
    before = clones(sim)
    proxy.add(Fault("CloneVM_Task", "drop"))
    provider.clone("p", spec("vm-dropped", folder))
    assert clones(sim) == before + 1 and set(provider.list_vms("p", folder)) == {"vm-dropped"}


def test_a_destroy_whose_answer_was_lost_is_done(provider: VsphereProvider, proxy: FaultProxy, sim: VcsimServer,
                                                 folder: str) -> None:
    provider.clone("p", spec("vm-gone", folder))
    proxy.add(Fault("Destroy_Task", "close"))
    provider.destroy("p", "vm-gone")
    assert proxy.calls("Destroy_Task") == 1 and "vm-gone" not in vf.vm_names(sim, folder)


def test_a_stalled_clone_answer_is_looked_up(provider: VsphereProvider, proxy: FaultProxy, sim: VcsimServer,
                                            folder: str) -> None:
    before = clones(sim)
    proxy.add(Fault("CloneVM_Task", "stall", seconds=4))  # beyond the provider's 2 s timeout
    provider.clone("p", spec("vm-stalled", folder))
    proxy.clear()
    assert clones(sim) == before + 1 and set(provider.list_vms("p", folder)) == {"vm-stalled"}


def test_refused_then_back(provider: VsphereProvider, proxy: FaultProxy, folder: str) -> None:
    provider.list_vms("p", folder)
    proxy.refuse()
    with pytest.raises(ProviderUnavailable):
        provider.list_vms("p", folder)
    proxy.accept()
    assert provider.list_vms("p", folder) == {}


def test_a_session_that_ends_during_a_clone_is_renewed_under_it(provider: VsphereProvider, proxy: FaultProxy,
                                                                 sim: VcsimServer, folder: str) -> None:
    before = clones(sim)
    sim.set_clone_delay(600)
    errors: list[BaseException] = []

    def clone() -> None:
        try:
            provider.clone("p", spec("vm-session", folder))
        except BaseException as err:  # checked below
            errors.append(err)

    worker = threading.Thread(target=clone)
    try:
        worker.start()
        wait_for(lambda: clones(sim) == before + 1, 10, "the clone running in vCenter")
        vf.end_sessions(sim)
        worker.join(20)
    finally:
        sim.set_clone_delay(0)
    assert not worker.is_alive() and not errors, errors
    assert clones(sim) == before + 1 and proxy.calls("CloneVM_Task") == 1, "the clone was not sent again"
    assert set(provider.list_vms("p", folder)) == {"vm-session"}
    vf.end_sessions(sim)
    provider.destroy("p", "vm-session")
    assert not vf.vm_names(sim, folder)
