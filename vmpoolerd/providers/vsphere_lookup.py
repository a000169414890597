"""Looking vCenter over when the answer to a call was lost, or a VM is not where it was: VMs by name
anywhere in the datacenter, and the clone tasks still running.

A clone or destroy whose answer never arrived is decided by what vCenter shows, never guessed: the VM by
its name and our mark, and the clone tasks of its template that are still queued or running. The same
look finds a pool's VMs that are no longer in its folder (moved, or the pool's `folder:` changed).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Collection, Iterable
from typing import Any

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmpooler_core.provider import VmFacts

from .vsphere_session import MISSING, retrieve, retrieve_spec

vim: Any = _vim
vmodl: Any = _vmodl
log = logging.getLogger("vmpooler.providers.vsphere")
_PC = vmodl.query.PropertyCollector

VM_PROPS = ["name", "config.template", "runtime.powerState", "runtime.host", "guest.hostName",
            "guest.ipAddress", "config.annotation", "parent"]
_TASK_PROPS = ["info.state", "info.descriptionId", "info.entity"]
_RUNNING = ("queued", "running")


def facts(props: dict[str, Any], mark: str | None) -> VmFacts:
    host = props.get("runtime.host")
    return VmFacts(name=props["name"], powered_on=props.get("runtime.powerState") == "poweredOn",
                   guest_hostname=props.get("guest.hostName") or None,
                   guest_ip=props.get("guest.ipAddress") or None,
                   host=host._moId if host is not None else None, pooler_id=mark)


def folder_contents(content: Any, folders: Collection[Any]) -> dict[str, list[dict[str, Any]] | None]:
    """The VMs and templates directly in each of `folders` (by the folder's id): their VM_PROPS, in one
    property query for all of them (one round trip per 1,000 objects), each folder's own `childEntity`
    telling whose each VM is. None for a folder that could not be read, or that holds a VM that could
    not: never a partial inventory (a VM missing from one counts as gone)."""
    into = _PC.TraversalSpec(type=vim.Folder, path="childEntity", skip=False)
    spec = _PC.FilterSpec(objectSet=[_PC.ObjectSpec(obj=folder, skip=False, selectSet=[into]) for folder in folders],
                          propSet=[_PC.PropertySpec(type=vim.Folder, pathSet=["childEntity"]),
                                   _PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PROPS)])
    children: dict[str, list[str]] = {}
    vms: dict[str, dict[str, Any]] = {}
    for obj, props in retrieve_spec(content, spec):
        if isinstance(obj, vim.Folder) and "childEntity" not in props.get(MISSING, ()):
            children[obj._moId] = [child._moId for child in props.get("childEntity") or []
                                   if isinstance(child, vim.VirtualMachine)]
        else:
            vms[obj._moId] = props
    found: dict[str, list[dict[str, Any]] | None] = {}
    for folder in folders:
        ids = children.get(folder._moId)
        # A child not in the answer went while it was read (a destroy): a look at that folder alone would
        # not have returned it either.
        listed = None if ids is None else [vms[child] for child in ids if child in vms]
        found[folder._moId] = None if listed is None or any("name" not in props for props in listed) else listed
    return found


def named_vms(content: Any, root: Any, names: Collection[str]) -> list[tuple[Any, dict[str, Any]]]:
    """The VMs (not templates) named `names` anywhere under `root`, through its folders at every depth:
    the names of all of them first (one round trip per 1,000), then the facts of the few wanted."""
    into_folders = _PC.TraversalSpec(name="folders", type=vim.Folder, path="childEntity", skip=False,
                                     selectSet=[_PC.SelectionSpec(name="folders")])
    spec = _PC.FilterSpec(objectSet=[_PC.ObjectSpec(obj=root, skip=True, selectSet=[into_folders])],
                          propSet=[_PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    wanted = set(names)
    matches = [vm for vm, props in retrieve_spec(content, spec) if props.get("name") in wanted]
    return [(vm, props) for vm, props in objects(content, matches, vim.VirtualMachine, VM_PROPS)
            if not props.get("config.template")]


def objects(content: Any, refs: Iterable[Any], kind: Any, props: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    """`props` of several objects of one type in one round trip."""
    refs = list(refs)
    if not refs:
        return []
    spec = _PC.FilterSpec(objectSet=[_PC.ObjectSpec(obj=ref, skip=False) for ref in refs],
                          propSet=[_PC.PropertySpec(type=kind, pathSet=props)])
    return retrieve_spec(content, spec)


def clone_tasks(content: Any, template: Any, known: Collection[str]) -> list[Any]:
    """The queued or running clone tasks of `template` other than `known` (task ids): clones whose call
    was answered to nobody here (its answer lost), or made by another pooler."""
    recent = retrieve(content, content.taskManager, None, vim.TaskManager, ["recentTask"])
    tasks = (recent[0][1].get("recentTask") or []) if recent else []
    running = []
    for task, props in objects(content, [t for t in tasks if t._moId not in known], vim.Task, _TASK_PROPS):
        entity = props.get("info.entity")
        if (props.get("info.descriptionId") == "VirtualMachine.clone" and props.get("info.state") in _RUNNING
                and entity is not None and entity._moId == template._moId):
            running.append(task)
    return running


def task_state(content: Any, task: Any) -> str | None:
    """The task's state; None when vCenter no longer knows it (restarted since)."""
    try:
        found = objects(content, [task], vim.Task, ["info.state"])
    except vmodl.fault.ManagedObjectNotFound:
        return None
    state = found[0][1].get("info.state") if found else None
    return None if state is None else str(state)


def folder_path(content: Any, folder: Any) -> str:
    """The inventory path of a folder under its datacenter's VM folder ("vmpooler/pool1")."""
    names: list[str] = []
    current = folder
    while isinstance(current, vim.Folder):
        props = objects(content, [current], vim.Folder, ["name", "parent"])
        if not props:
            break
        name, parent = props[0][1].get("name"), props[0][1].get("parent")
        if isinstance(parent, vim.Datacenter):
            break  # `name` is the datacenter's VM folder itself
        names.append(str(name))
        current = parent
    return "/".join(reversed(names))


class Whereabouts:
    """Where the VMs found outside their pool's folder were last seen, so that the next look reads those
    folders, not the whole datacenter."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._where: dict[str, Any] = {}  # VM name -> its folder
        self._lock = threading.Lock()

    def folder(self, name: str) -> Any:
        with self._lock:
            return self._where.get(name)

    def find(self, content: Any, root: Any, names: Collection[str], home: str, marks: Any) -> dict[str, VmFacts]:
        """The VMs named `names`: first in the folders they were last seen in, then anywhere under
        `root` (the datacenter's VM folder). `home` is the pool's folder (a VM found there has no
        `folder`); `marks` reads the pooler mark from an annotation."""
        wanted = set(names)
        found: dict[str, tuple[Any, dict[str, Any]]] = {}
        with self._lock:
            folders = {self._where[name] for name in wanted if name in self._where}
        for folder in folders:
            try:
                children = retrieve(content, folder, (vim.Folder, "childEntity"), vim.VirtualMachine, VM_PROPS)
            except vmodl.fault.ManagedObjectNotFound:
                continue  # the folder is gone: the sweep below finds the VMs wherever they went
            found.update((props["name"], (vm, props)) for vm, props in children if props.get("name") in wanted)
        if wanted - found.keys():
            found.update((props["name"], (vm, props)) for vm, props in named_vms(content, root, wanted - found.keys()))
        paths: dict[str, str] = {}
        located: dict[str, VmFacts] = {}
        for name, (_, props) in found.items():
            parent = props.get("parent")
            if parent is None:
                continue
            path = paths.get(parent._moId)
            if path is None:
                path = paths[parent._moId] = folder_path(content, parent)
            mark = marks(props.get("config.annotation"))
            if path.strip("/") == home.strip("/"):
                located[name] = facts(props, mark)
                with self._lock:
                    self._where.pop(name, None)
                continue
            located[name] = dataclasses.replace(facts(props, mark), folder=path)
            with self._lock:
                seen = self._where.get(name)
                self._where[name] = parent
            if seen is None or seen._moId != parent._moId:
                log.info("vsphere %s: %s found in folder %s: tracked there", self.provider, name, path)
        with self._lock:
            for name in wanted - located.keys():
                self._where.pop(name, None)
        return located
