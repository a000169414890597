"""Smoke test of the vCenter simulator in tests/vcsim (see README.md there).

Builds it with scripts/build-vcsim, starts it on free loopback ports and
checks, through pyVmomi, the clone behaviour vmpooler relies on: power-on,
guest hostname from guestinfo.hostname, injected failures and clone delay.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

pyVmomi = pytest.importorskip("pyVmomi")
from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402
from pyVmomi import vim  # noqa: E402

pytestmark = pytest.mark.vcsim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, "scripts", "build-vcsim")
GOVMOMI = "/usr/share/gocode/src/github.com/vmware/govmomi/simulator"

DC = "DC0"
TEMPLATE = "templates/centos-6-x86_64"
POOL_FOLDER = "vmpooler/pool1"
RESOURCE_POOL = "DC0/host/DC0_C0/Resources"


def _start(binary, args, timeout=30):
    """Start vcsim; return (process, {KEY: value}) once VCSIM_URL is printed."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [binary, *args],
        stdin=subprocess.PIPE,  # with -exit-on-stdin-eof: dies with us
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    found = {}
    done = threading.Event()

    def read():
        for line in proc.stdout:
            key, sep, value = line.strip().partition("=")
            if sep:
                found[key] = value
            if key == "VCSIM_URL":
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout) or "VCSIM_URL" not in found:
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError("vcsim did not start: %s" % log.read().decode(errors="replace"))
    return proc, found


def _stop(proc):
    proc.terminate()
    try:
        assert proc.wait(10) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def vcsim():
    if shutil.which("go") is None or not os.path.isdir(GOVMOMI):
        pytest.skip("needs Debian's golang-go and golang-github-vmware-govmomi-dev")
    binary = subprocess.run(
        [BUILD], check=True, stdout=subprocess.PIPE, text=True, timeout=600
    ).stdout.strip().splitlines()[-1]
    proc, found = _start(
        binary,
        [
            "-listen", "127.0.0.1:0",
            "-control", "127.0.0.1:0",
            "-template", TEMPLATE,
            "-folders", POOL_FOLDER + ",vmpooler/pool2",
            "-exit-on-stdin-eof",
        ],
    )
    try:
        yield found
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def si(vcsim):
    url = urllib.parse.urlsplit(vcsim["VCSIM_URL"])
    conn = SmartConnect(
        host=url.hostname,
        port=url.port,
        user=url.username,
        pwd=url.password,
        disableSslCertValidation=True,
    )
    yield conn
    Disconnect(conn)


def control(vcsim, path, method="POST"):
    req = urllib.request.Request(vcsim["VCSIM_CONTROL"] + path, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


@pytest.fixture
def reset(vcsim):
    control(vcsim, "/clone-fail?percent=0")
    control(vcsim, "/clone-delay?ms=0")
    yield
    control(vcsim, "/clone-fail?percent=0")
    control(vcsim, "/clone-delay?ms=0")


def find(si, path):
    return si.content.searchIndex.FindByInventoryPath("%s/%s" % (DC, path))


def start_clone(si, name, power_on=True, hostname=None):
    template = find(si, "vm/" + TEMPLATE)
    folder = find(si, "vm/" + POOL_FOLDER)
    pool = si.content.searchIndex.FindByInventoryPath(RESOURCE_POOL)
    assert template is not None and folder is not None and pool is not None
    config = vim.vm.ConfigSpec()
    if hostname:
        config.extraConfig = [vim.option.OptionValue(key="guestinfo.hostname", value=hostname)]
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=pool),
        powerOn=power_on,
        template=False,
        config=config,
    )
    return template.CloneVM_Task(folder=folder, name=name, spec=spec)


def test_control_endpoints(vcsim, reset):
    assert control(vcsim, "/healthz", method="GET").strip() == "ok"
    state = json.loads(control(vcsim, "/clone-fail?percent=30"))
    assert state["clone_fail_percent"] == 30
    state = json.loads(control(vcsim, "/clone-delay?ms=250"))
    assert state["clone_delay_ms"] == 250
    with pytest.raises(urllib.error.HTTPError) as err:
        control(vcsim, "/clone-fail?percent=101")
    assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        control(vcsim, "/clone-delay?ms=5", method="GET")
    assert err.value.code == 405


def test_template_exists(si):
    template = find(si, "vm/" + TEMPLATE)
    assert template is not None
    assert template.config.template is True
    assert find(si, "vm/vmpooler/pool2") is not None


def test_clone_powers_on_and_reports_hostname(si, reset):
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
    assert find(si, "vm/%s/abc123" % POOL_FOLDER) == vm


def test_clone_without_power_on_stays_off(si, reset):
    task = start_clone(si, "cold1", power_on=False, hostname="cold1")
    WaitForTask(task)
    vm = task.info.result
    assert vm.runtime.powerState == "poweredOff"
    assert not vm.guest.hostName


def test_injected_failure(si, vcsim, reset):
    control(vcsim, "/clone-fail?percent=100")
    task = start_clone(si, "fail1", hostname="fail1")
    with pytest.raises(vim.fault.SystemError):
        WaitForTask(task)
    assert task.info.state == "error"
    assert "injected" in task.info.error.msg
    assert find(si, "vm/%s/fail1" % POOL_FOLDER) is None

    control(vcsim, "/clone-fail?percent=0")
    task = start_clone(si, "fail1", hostname="fail1")
    WaitForTask(task)
    assert task.info.state == "success"


def test_clone_delay(si, vcsim, reset):
    control(vcsim, "/clone-delay?ms=700")
    t0 = time.monotonic()
    task = start_clone(si, "slow1", hostname="slow1")
    returned = time.monotonic() - t0
    # Like vCenter, the call answers with an unfinished task at once.
    assert returned < 0.5
    assert task.info.state in ("queued", "running")
    WaitForTask(task)
    elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed < 5
    assert task.info.result.guest.hostName == "slow1"
