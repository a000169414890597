"""The vSphere provider (pyvmomi): pools are folders of a datacenter, VMs are clones of a template.

Options, under `providers: <name>:` (or the era-A top-level `vsphere:` section): see `Session` for the
connection (server, port, username, password, insecure, timeout, datacenter), plus

    ready_check      the ready check of pools that name none: tcp (default), hostname or none
    clone_timeout    seconds a clone task may run before it is cancelled (default: the pool's timeout)

Pool `template` and `folder` are paths under the datacenter's VM folder ("templates/centos-6-x86_64",
"vmpooler/centos-6-x86_64"); `datastore` a datastore name; `clone_target` a cluster under the host
folder, where the clone goes to the least-loaded host.

Each clone's annotation (its vSphere notes) is JSON: the pool and manager, `created_by`, `base_template`
and `creation_timestamp` as the original vmpooler writes them, and `pooler_id`, the mark of the pooler
that cloned it. The inventory reads the mark back (`VmFacts.pooler_id`) in its one batched query.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmpooler_core import clock
from vmpooler_core.config import PoolConfig, ProviderConfig
from vmpooler_core.provider import CloneSpec, Located, NameTaken, OutcomeUnknown, ProviderError, ReadyCheck, VmFacts

from .vsphere_lookup import VM_PROPS, Whereabouts, clone_tasks, facts, folder_contents, objects, task_state
from .vsphere_session import Session, TaskFailed, TaskLost, properties, retrieve
from .vsphere_stub import NETWORK_ERRORS, Unanswered

log = logging.getLogger("vmpooler.providers.vsphere")
vim: Any = _vim  # built at run time: untyped to a type checker
vmodl: Any = _vmodl

_MARK = "pooler_id"  # the annotation's key for the identity of the pooler that cloned the VM
_HOST_PROPS = ["name", "runtime.connectionState", "runtime.inMaintenanceMode",
               "summary.quickStats.overallCpuUsage", "summary.quickStats.overallMemoryUsage",
               "summary.hardware.cpuMhz", "summary.hardware.numCpuCores", "summary.hardware.memorySize"]
_HOST_LOAD_SECONDS = 60.0  # how long a cluster's host loads are trusted before they are read again
_PLACEMENT_WEIGHT = 0.02  # load a clone placed since then is assumed to add, so a burst spreads out
# How long a template's placement and current snapshot are reused: a clone would otherwise spend three
# round trips on them (and an update of the template is picked up within this time).
_TEMPLATE_SECONDS = 60.0
_CLONE_SENDS = 2  # a clone found not to have been made after its answer was lost is sent once more
_DESTROY_SENDS = 3
_LOOK_AGAIN = 0.5  # seconds between looks at clone tasks that may be a lost clone's
# What vCenter answers a clone whose name is taken: by a VM in the folder, or by files of that name left
# on the datastore.
_NAME_CLASHES = (vim.fault.DuplicateName, vim.fault.FileAlreadyExists, vim.fault.AlreadyExists)


@dataclass(slots=True)
class _ClusterLoads:
    """A `clone_target` cluster's usable hosts as last read, and the clones placed on each since."""

    read_at: float  # time.monotonic()
    hosts: list[tuple[float, str, Any]]  # (load 0..1, host name, the HostSystem)
    placed: dict[str, int] = field(default_factory=dict)  # host name -> clones placed since read_at


def _host_load(props: Mapping[str, Any]) -> float | None:
    """A host's load, 0..1: the busier of CPU and memory; None when it cannot take a VM."""
    if props.get("runtime.connectionState") != "connected" or props.get("runtime.inMaintenanceMode"):
        return None
    cpu_total = (props.get("summary.hardware.cpuMhz") or 0) * (props.get("summary.hardware.numCpuCores") or 0)
    mem_total = (props.get("summary.hardware.memorySize") or 0) / (1024 * 1024)
    cpu = (props.get("summary.quickStats.overallCpuUsage") or 0) / cpu_total if cpu_total else 1.0
    mem = (props.get("summary.quickStats.overallMemoryUsage") or 0) / mem_total if mem_total else 1.0
    return max(cpu, mem)


class VsphereProvider:
    def __init__(self, config: ProviderConfig, pools: Mapping[str, PoolConfig]) -> None:
        self.name = config.name
        options = config.options
        self.ready_check: ReadyCheck = cast(ReadyCheck, options.get("ready_check") or "tcp")
        timeout = options.get("clone_timeout")
        self.clone_timeout: float | None = None if timeout is None else float(timeout)
        self.session = Session(config.name, options)
        self._pools = dict(pools)
        self._loads: dict[str, _ClusterLoads] = {}  # by cluster path: see _pick_host
        self._loads_lock = threading.Lock()
        self._tasks: set[str] = set()  # the clone tasks this provider waits for (see _clone_outcome)
        self._tasks_lock = threading.Lock()
        self._whereabouts = Whereabouts(config.name)

    def _folder(self, pool: str) -> str:
        config = self._pools.get(pool)
        if config is None or not config.folder:
            raise ProviderError(f"vsphere {self.name}: pool {pool} has no folder")
        return config.folder

    def _vm(self, content: Any, pool: str, name: str) -> Any:
        """The VM in its pool's folder, else where it was last found (see `locate`), else anywhere in the
        datacenter; None when there is none of that name."""
        folder = self.session.find(content, self._folder(pool))
        vm = content.searchIndex.FindChild(folder, name)
        elsewhere = self._whereabouts.folder(name)
        if vm is None and elsewhere is not None:
            vm = content.searchIndex.FindChild(elsewhere, name)
        if vm is None:
            self._whereabouts.find(content, self._vm_root(content), [name], self._folder(pool), pooler_mark)
            elsewhere = self._whereabouts.folder(name)
            vm = content.searchIndex.FindChild(elsewhere, name) if elsewhere is not None else None
        return vm

    def _vm_root(self, content: Any) -> Any:
        return self.session.find(content, "")

    def locate(self, pool: str, names: Collection[str]) -> Located:
        config = self._pools.get(pool)
        template_path = (config.template if config else None) or pool

        def run(content: Any) -> Located:
            with self._tasks_lock:
                known = set(self._tasks)
            try:
                template = self.session.find(content, template_path)
            except ProviderError:
                template = None  # no such template: nothing can be cloning from it
            # The clone tasks first: a clone that ends after they are read shows its VM to the look below.
            cloning = template is not None and bool(clone_tasks(content, template, known))
            found = self._whereabouts.find(content, self._vm_root(content), names, self._folder(pool),
                                           pooler_mark)
            return Located(found, cloning)

        return self.session.run(run)

    # Inventory -----------------------------------------------------------------------------------

    def list_vms(self, pool: str, folder: str | None) -> dict[str, VmFacts]:
        path = folder or self._folder(pool)

        def read(content: Any) -> dict[str, VmFacts]:
            root = self.session.find(content, path)
            found: dict[str, VmFacts] = {}
            children = (vim.Folder, "childEntity")
            for _, props in retrieve(content, root, children, vim.VirtualMachine, VM_PROPS):
                if "name" not in props:
                    # Never return a partial inventory: a VM missing from it counts as gone.
                    raise ProviderError(f"vsphere {self.name}: a VM in {path} could not be read")
                if props.get("config.template"):
                    continue  # a template is never a pool VM, whatever folder it sits in
                found[props["name"]] = facts(props, pooler_mark(props.get("config.annotation")))
            return found

        return self.session.run(read)

    def list_pools(self, folders: Mapping[str, str | None]) -> dict[str, dict[str, VmFacts] | ProviderError]:
        def read(content: Any) -> dict[str, dict[str, VmFacts] | ProviderError]:
            result: dict[str, dict[str, VmFacts] | ProviderError] = {}
            roots: dict[str, tuple[str, Any]] = {}  # pool -> its folder's path and the folder
            for pool, folder in folders.items():
                try:
                    path = folder or self._folder(pool)
                    roots[pool] = path, self.session.find(content, path)
                except ProviderError as err:
                    result[pool] = err
            unique = {root._moId: root for _, root in roots.values()}
            contents = folder_contents(content, list(unique.values())) if unique else {}
            unread = [unique[moid] for moid, listed in contents.items() if listed is None]
            if unread:
                # Read once more: a VM caught half made (the simulator's clones, for one) is whole a moment
                # later, and a pool whose read failed is backed off from.
                contents.update(folder_contents(content, unread))
            for pool, (path, root) in roots.items():
                listed = contents[root._moId]
                if listed is None:
                    result[pool] = ProviderError(f"vsphere {self.name}: a VM in {path} could not be read")
                    continue
                result[pool] = {props["name"]: facts(props, pooler_mark(props.get("config.annotation")))
                                for props in listed if not props.get("config.template")}
            return result

        return self.session.run(read)

    # Clone ---------------------------------------------------------------------------------------

    def clone(self, pool: str, spec: CloneSpec) -> None:
        self.session.run(lambda content: self._clone(content, spec))

    def _clone_spec(self, content: Any, spec: CloneSpec, template: Any) -> Any:
        own_pool, snapshot = self.session.cached(
            f"template:{spec.template}", lambda: _placement(content, template), _TEMPLATE_SECONDS)
        relocate = vim.vm.RelocateSpec(pool=own_pool)
        if spec.target:
            cluster = self.session.find(content, spec.target, kind="host")
            relocate.pool = self.session.cached(f"pool:{spec.target}", lambda: cluster.resourcePool)
            relocate.host = self._pick_host(content, spec.target, cluster)
        if spec.datastore:
            relocate.datastore = self.session.datastore(content, spec.datastore)
        clone_spec = vim.vm.CloneSpec(location=relocate, powerOn=True, template=False)
        if spec.linked and snapshot is not None:
            # A linked clone: a delta disk on the template's current snapshot, seconds instead of a copy.
            relocate.diskMoveType = "createNewChildDiskBacking"
            clone_spec.snapshot = snapshot
        clone_spec.config = vim.vm.ConfigSpec(
            annotation=self._annotation(spec),
            extraConfig=[vim.option.OptionValue(key="guestinfo.hostname", value=spec.name)])
        return clone_spec

    def _clone(self, content: Any, spec: CloneSpec) -> None:
        template = self.session.find(content, spec.template)
        folder = self.session.find(content, spec.folder)
        clone_spec = self._clone_spec(content, spec, template)
        deadline = time.monotonic() + (self.clone_timeout or spec.timeout)
        for attempt in range(1, _CLONE_SENDS + 1):
            task = None
            sessions = self.session.relogins(content)
            try:
                task = template.CloneVM_Task(folder=folder, name=spec.name, spec=clone_spec)
                with self._tasks_lock:
                    self._tasks.add(task._moId)
                self.session.wait(content, task, max(deadline - time.monotonic(), 1.0))
                return
            except (vim.fault.DuplicateName, vim.fault.FileAlreadyExists, vim.fault.AlreadyExists) as err:
                clash: Exception = err  # refused at once: nothing was made
            except TaskFailed as err:
                if not isinstance(err.fault, _NAME_CLASHES):
                    raise
                clash = err
            except (Unanswered, TaskLost, *NETWORK_ERRORS) as err:
                if task is None and not isinstance(err, Unanswered):
                    raise  # the request never went out whole: nothing was made, vCenter is unreachable
                log.warning("vsphere %s: clone of %s: %s; looking at vCenter for what became of it", self.name,
                            spec.name, err or type(err).__name__)
                if task is not None and self.session.relogins(content) != sessions:
                    with self._tasks_lock:
                        self._tasks.discard(task._moId)  # its id no longer says which task it is
                    task = None
                if self._clone_outcome(content, spec, template, folder, task, deadline):
                    log.info("vsphere %s: clone of %s was made (its answer was lost): adopted", self.name,
                             spec.name)
                    return
                if attempt < _CLONE_SENDS:
                    log.info("vsphere %s: clone of %s was not made: sending it again", self.name, spec.name)
                continue
            finally:
                if task is not None:
                    with self._tasks_lock:
                        self._tasks.discard(task._moId)
            # The name is taken. By our own clone of it, when an earlier send did get through after all.
            if self._ours(content, folder, spec):
                return
            raise NameTaken(f"vsphere {self.name}: {spec.name}: {_fault_name(clash)}")
        raise OutcomeUnknown(f"vsphere {self.name}: clone of {spec.name} could not be sent")

    def _ours(self, content: Any, folder: Any, spec: CloneSpec) -> bool | None:
        """Whether the VM named `spec.name` in `folder` is the one this clone makes (it carries the clone's
        mark); None when there is no such VM."""
        vm = content.searchIndex.FindChild(folder, spec.name)
        if vm is None:
            return None
        found = objects(content, [vm], vim.VirtualMachine, ["config.annotation"])
        mark = pooler_mark(found[0][1].get("config.annotation")) if found else None
        return mark == spec.pooler_id

    def _clone_outcome(self, content: Any, spec: CloneSpec, template: Any, folder: Any, task: Any,
                       deadline: float) -> bool:
        """Whether a clone whose answer was lost was made, from what vCenter shows: its task while vCenter
        still has it, else the VM by name and mark once no clone task of the template that could be it is
        queued or running. OutcomeUnknown when vCenter cannot be asked; NameTaken when the name belongs
        to a VM that is not this clone."""
        try:
            while True:
                state = task_state(content, task) if task is not None else None
                if state in ("queued", "running"):
                    self.session.wait(content, task, max(deadline - time.monotonic(), 1.0))
                    return True
                ours = self._ours(content, folder, spec)
                if ours is not None:
                    if not ours:
                        raise NameTaken(f"vsphere {self.name}: {spec.name} is another VM's name")
                    return True
                if state == "success":
                    return True  # made, and already moved on from the folder
                if state == "error":
                    raise ProviderError(f"vsphere {self.name}: clone of {spec.name} failed (its task ended in "
                                        "error)")
                if state is not None:
                    return False
                with self._tasks_lock:
                    known = set(self._tasks)
                if not clone_tasks(content, template, known):
                    return False
                if time.monotonic() >= deadline:
                    raise OutcomeUnknown(f"vsphere {self.name}: clone of {spec.name}: clones of its template "
                                         "still running at its deadline")
                time.sleep(_LOOK_AGAIN)
        except TaskFailed as err:
            if isinstance(err.fault, _NAME_CLASHES):
                raise NameTaken(f"vsphere {self.name}: {spec.name}: {_fault_name(err)}") from None
            raise
        except (Unanswered, TaskLost, vim.fault.NotAuthenticated, vmodl.MethodFault, *NETWORK_ERRORS) as err:
            raise OutcomeUnknown(f"vsphere {self.name}: clone of {spec.name}: its answer was lost and vCenter "
                                 f"cannot be asked what became of it: {err or type(err).__name__}") from None

    def _annotation(self, spec: CloneSpec) -> str:
        try:
            note = json.loads(spec.annotation) if spec.annotation else {}
        except ValueError:
            note = None
        if not isinstance(note, dict):
            if not spec.pooler_id:
                return spec.annotation
            note = {"notes": spec.annotation}  # free text cannot carry the mark: it goes under a key
        if spec.pooler_id:
            note[_MARK] = spec.pooler_id
        note.setdefault("created_by", self.session.user)
        note.setdefault("base_template", spec.template)
        note.setdefault("creation_timestamp", clock.stamp())
        return json.dumps(note, indent=2)

    # Host choice ---------------------------------------------------------------------------------

    def _pick_host(self, content: Any, target: str, cluster: Any) -> Any:
        """The least-loaded host of the `clone_target` cluster, counting the clones placed since its loads
        were read."""
        with self._loads_lock:
            cached = self._loads.get(target)
        if cached is None or time.monotonic() - cached.read_at > _HOST_LOAD_SECONDS:
            hosts = []
            for host, props in retrieve(content, cluster, (vim.ComputeResource, "host"), vim.HostSystem,
                                        _HOST_PROPS):
                load = _host_load(props)
                if load is not None:
                    hosts.append((load, str(props.get("name")), host))
            if not hosts:
                raise ProviderError(f"vsphere {self.name}: no usable host in {target}")
            cached = _ClusterLoads(time.monotonic(), hosts)
        with self._loads_lock:
            self._loads[target] = cached
            placed = cached.placed
            _, name, host = min(cached.hosts, key=lambda h: h[0] + _PLACEMENT_WEIGHT * placed.get(h[1], 0))
            placed[name] = placed.get(name, 0) + 1
        return host

    # VM operations -------------------------------------------------------------------------------

    def _power_off(self, content: Any, vm: Any) -> None:
        if vm.runtime.powerState == "poweredOn":
            self.session.wait(content, vm.PowerOffVM_Task(), self.session.timeout)

    def destroy(self, pool: str, name: str) -> None:
        def run(content: Any) -> None:
            for _ in range(_DESTROY_SENDS):
                vm = self._vm(content, pool, name)
                if vm is None:
                    return  # gone: the goal is reached (also when an earlier send did it unanswered)
                try:
                    self._power_off(content, vm)
                    self.session.wait(content, vm.Destroy_Task(), self.session.timeout * 5)
                    return
                except (Unanswered, TaskLost) as err:
                    log.warning("vsphere %s: destroy of %s: %s; looking at vCenter", self.name, name, err)
            raise OutcomeUnknown(f"vsphere {self.name}: destroy of {name}: no answer, {_DESTROY_SENDS} times")

        self.session.run(run)

    def snapshot(self, pool: str, name: str, snapshot: str) -> None:
        def run(content: Any) -> None:
            vm = self._require_vm(content, pool, name)
            task = vm.CreateSnapshot_Task(name=snapshot, description="vmpooler", memory=True, quiesce=False)
            self.session.wait(content, task, self.session.timeout * 5)

        self.session.run(run)

    def revert(self, pool: str, name: str, snapshot: str) -> None:
        def run(content: Any) -> None:
            vm = self._require_vm(content, pool, name)
            tree = properties(content, vm, ["snapshot"]).get("snapshot")
            found = _find_snapshot(tree.rootSnapshotList if tree else [], snapshot)
            if found is None:
                raise ProviderError(f"vsphere {self.name}: {name} has no snapshot {snapshot}")
            self.session.wait(content, found.RevertToSnapshot_Task(), self.session.timeout * 5)

        self.session.run(run)

    def add_disk(self, pool: str, name: str, size_gb: int, datastore: str | None) -> None:
        def run(content: Any) -> None:
            vm = self._require_vm(content, pool, name)
            change = _new_disk(vm, size_gb, datastore or self._pools[pool].datastore)
            task = vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change]))
            self.session.wait(content, task, self.session.timeout * 5)

        self.session.run(run)

    def _require_vm(self, content: Any, pool: str, name: str) -> Any:
        vm = self._vm(content, pool, name)
        if vm is None:
            raise ProviderError(f"vsphere {self.name}: no VM {name}")
        return vm

    def close(self) -> None:
        self.session.close()


def pooler_mark(annotation: object) -> str | None:
    """The pooler id a VM's annotation carries (see `VsphereProvider._annotation`); None for any other
    note: none, free text, or the original vmpooler's JSON (name, created_by, base_template,
    creation_timestamp), which names the vCenter user, not a pooler."""
    if not isinstance(annotation, str) or _MARK not in annotation:
        return None
    try:
        note = json.loads(annotation)
    except ValueError:
        return None
    mark = note.get(_MARK) if isinstance(note, dict) else None
    return mark if isinstance(mark, str) and mark else None


def _placement(content: Any, template: Any) -> tuple[Any, Any]:
    """Where a clone of `template` goes without a clone_target, and its current snapshot (None without
    one). A template has no resource pool of its own: its host's cluster (or host) root pool it is."""
    facts = properties(content, template, ["runtime.host", "snapshot"])
    snapshot = facts["snapshot"].currentSnapshot if facts.get("snapshot") else None
    return facts["runtime.host"].parent.resourcePool, snapshot


def _fault_name(err: Exception) -> str:
    fault = err.fault if isinstance(err, TaskFailed) else err
    return str(getattr(fault, "msg", "") or type(fault).__name__)


def _find_snapshot(trees: Any, name: str) -> Any:
    for tree in trees or []:
        if tree.name == name:
            return tree.snapshot
        found = _find_snapshot(tree.childSnapshotList, name)
        if found is not None:
            return found
    return None


def _new_disk(vm: Any, size_gb: int, datastore: str | None) -> Any:
    """A thin disk of `size_gb` on the VM's first SCSI controller, at its next free unit (7 is the
    controller's own), in `datastore` or next to the VM's files."""
    devices = vm.config.hardware.device
    controller = next((d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)), None)
    if controller is None:
        raise ProviderError(f"{vm.name} has no SCSI controller for a new disk")
    used = {d.unitNumber for d in devices if getattr(d, "controllerKey", None) == controller.key}
    unit = next(u for u in range(16) if u != 7 and u not in used)
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=True,
                                                             fileName=f"[{datastore}]" if datastore else "")
    disk = vim.vm.device.VirtualDisk(backing=backing, controllerKey=controller.key, unitNumber=unit,
                                     capacityInKB=size_gb * 1024 * 1024)
    return vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
