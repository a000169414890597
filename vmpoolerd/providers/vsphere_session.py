"""One vCenter session, shared by the provider's threads, re-established when it expires or breaks.

Every call goes through `Session.run(fn)`, which maps pyvmomi's failures to the errors the manager acts
on: `ProviderUnavailable` (vCenter unreachable, or the login refused, as `ProviderLoginRefused`, which
health reports tell apart: back off and retry), `OutcomeUnknown` (a change was asked of vCenter and its
answer lost) and `ProviderError` (this one operation failed). The connections themselves (idle timeout,
re-sending, logging in again when the session expired under a call) are vsphere_stub.py's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmpooler_core.config import Secret
from vmpooler_core.provider import OutcomeUnknown, ProviderError, ProviderLoginRefused, ProviderUnavailable

from .vsphere_stub import NETWORK_ERRORS, Stub, Unanswered

T = TypeVar("T")
# pyVmomi builds its types at run time: to a type checker they are untyped.
vim: Any = _vim
vmodl: Any = _vmodl
connect: Any = _connect
log = logging.getLogger("vmpooler.providers.vsphere")

_PC = vmodl.query.PropertyCollector
_NETWORK_ERRORS = NETWORK_ERRORS  # failures of the connection itself, as opposed to a fault vCenter answered
# Seconds an idle HTTPS connection is kept for reuse: below the keep-alive timeout of servers and of the
# proxies in front of them (pyvmomi's own default, 900 s, is far above any).
IDLE_TIMEOUT = 20.0


class TaskLost(Exception):
    """The task being waited for is gone (vCenter restarted, or forgot it): its outcome must be looked up."""


class TaskFailed(ProviderError):
    """A task ended in error; `fault` is vCenter's fault (DuplicateName, FileAlreadyExists, ...)."""

    def __init__(self, message: str, fault: Any) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True, slots=True)
class _Login:
    """A logged-in session: the service instance and its content, read once at the login (pyvmomi reads
    `si.content` with a SOAP call at each access)."""

    si: Any
    content: Any


class Session:
    """Options read: server, port (443), username (or user), password, insecure (false: verify the
    certificate), timeout (60 s per HTTP request), datacenter (default: the first one), connections
    (32: idle HTTPS connections kept for reuse), idle_timeout (20 s: how long one is kept idle)."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.server = str(options["server"])
        self.port = int(options.get("port") or 443)
        self.user = str(options.get("username") or options.get("user") or "")
        password = options.get("password")
        self._password = password if isinstance(password, Secret) else Secret(str(password or ""))
        self.insecure = bool(options.get("insecure", False))
        self.timeout = float(options.get("timeout") or 60)
        self.connections = int(options.get("connections") or 32)
        idle = options.get("idle_timeout")
        self.idle_timeout = IDLE_TIMEOUT if idle is None else float(idle)
        self._datacenter_name: str | None = options.get("datacenter")
        self._current: _Login | None = None
        self._login: Future[_Login] | None = None  # the login under way, if any (see `_connect`)
        self._closed = False
        self._lock = threading.Lock()
        # Managed object references found by inventory path, and other slow-changing lookups; they
        # change when vCenter is rebuilt (or the simulator restarted), so the cache goes with the session.
        self._cache: dict[str, tuple[float, Any]] = {}
        self.datacenter = ""

    # Connection ----------------------------------------------------------------------------------

    def _connect(self) -> _Login:
        """The session, logging in first when there is none. The login runs in a thread of its own and is
        waited for at most `timeout` seconds: pyvmomi's SmartConnect first fetches the server's version
        list over a connection with no timeout at all, so a vCenter that accepts connections but does not
        answer (hung, overloaded, behind a dead proxy) would block the caller, and every other caller
        behind the lock, for as long as it stays that way (and SIGTERM could not stop the daemon). One
        login at a time: callers arriving meanwhile wait for the same one."""
        with self._lock:
            if self._current is not None:
                return self._current
            login = self._login
            if login is None or login.done():
                login = self._login = Future()
                threading.Thread(target=self._log_in, args=(login,), name=f"vsphere {self.name} login",
                                 daemon=True).start()  # daemon: a login that never ends must not block exit
        try:
            return login.result(timeout=self.timeout)
        except FutureTimeout:
            raise ProviderUnavailable(f"vsphere {self.name}: {self.server}:{self.port}: no answer to the login "
                                      f"within {self.timeout:.0f}s") from None

    def _log_in(self, login: Future[_Login]) -> None:
        try:
            current = self._service_instance()
            datacenter = self._datacenter_name or self._first_datacenter(current.content)
        except BaseException as err:  # handed to the waiting callers, which map it (see `run`)
            login.set_exception(err)
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._current, self._cache, self.datacenter = current, {}, datacenter
        if closed:  # the provider was closed while this login was still on its way
            with contextlib.suppress(*_NETWORK_ERRORS, vmodl.MethodFault):
                connect.Disconnect(current.si)
            login.set_exception(ProviderUnavailable(f"vsphere {self.name}: closed"))
            return
        log.info("vsphere %s: logged in to %s as %s", self.name, self.server, self.user)
        login.set_result(current)

    def _service_instance(self) -> _Login:
        """Log in (as pyvmomi's SmartConnect does) through a `Stub` of our own."""
        context = connect.getSslContext(self.server, None, self.insecure)
        # The API version vCenter prefers; this probe's own connection is closed when it is done.
        version = connect.SmartStubAdapter(host=self.server, port=self.port, sslContext=context,
                                           httpConnectionTimeout=self.timeout).version
        # pyvmomi keeps 5 idle HTTPS connections and opens (TLS handshake and all) and closes one per
        # call beyond that: with a dozen clones waiting on tasks at once, most calls would.
        stub = Stub(host=self.server, port=self.port, version=version, sslContext=context,
                    httpConnectionTimeout=self.timeout, connectionPoolTimeout=self.idle_timeout,
                    poolSize=self.connections)
        si = vim.ServiceInstance("ServiceInstance", stub)
        content = si.RetrieveContent()
        content.sessionManager.Login(self.user, self._password.reveal(), None)

        def relogin() -> None:
            content.sessionManager.Login(self.user, self._password.reveal(), None)
            with self._lock:
                if self._current is not None and self._current.si is si:
                    # A restarted vCenter may number its objects differently: look everything up again.
                    self._cache = {}
            log.info("vsphere %s: logged in again to %s as %s", self.name, self.server, self.user)

        stub.relogin = relogin
        return _Login(si, content)

    @staticmethod
    def _first_datacenter(content: Any) -> str:
        for entity in content.rootFolder.childEntity:
            if isinstance(entity, vim.Datacenter):
                return str(entity.name)
        raise ProviderError("no datacenter in vCenter (set the provider's `datacenter`)")

    def reset(self, current: _Login | None = None) -> None:
        """Forget the session (and every cached reference); the next call logs in again. With `current`,
        only if that is still the current session: another thread may have logged in again already."""
        with self._lock:
            if current is None or current is self._current:
                self._current, self._cache = None, {}

    def close(self) -> None:
        with self._lock:
            current, self._current, self._closed = self._current, None, True
        if current is not None:
            try:
                connect.Disconnect(current.si)
            except (*_NETWORK_ERRORS, vmodl.MethodFault):
                pass  # vCenter gone or session expired: nothing to log out of

    def run(self, fn: Callable[[Any], T]) -> T:
        """fn(content) with errors mapped. Run again once when vCenter refused a call for an object it no
        longer has under that id (a cached reference gone stale, after a restart): the refused call did
        nothing, and the lookups are made afresh. `fn` must leave no call that changes vCenter able to
        raise ManagedObjectNotFound after one went through (see `wait`)."""
        for attempt in (1, 2):
            current = None
            try:
                current = self._connect()
                return fn(current.content)
            except vim.fault.NotAuthenticated:
                self.reset(current)  # the stub logs in again under a call; this is a login that did not hold
                raise ProviderUnavailable(f"vsphere {self.name}: session refused after logging in") from None
            except vim.fault.InvalidLogin:
                self.reset(current)
                raise ProviderLoginRefused(f"vsphere {self.name}: {self.server}:{self.port}: login refused for "
                                           f"user {self.user!r} (InvalidLogin)") from None
            except vmodl.fault.ManagedObjectNotFound as err:
                self._cache = {}  # a cached reference went stale: look everything up again
                if attempt == 2:
                    raise ProviderError(f"vsphere {self.name}: {err.msg or 'object not found'}") from None
            except vmodl.MethodFault as err:
                raise ProviderError(f"vsphere {self.name}: {err.msg or type(err).__name__}") from None
            except Unanswered as err:
                raise OutcomeUnknown(f"vsphere {self.name}: {self.server}:{self.port}: {err}") from None
            except TaskLost as err:
                raise OutcomeUnknown(str(err)) from None
            except _NETWORK_ERRORS as err:
                self.reset(current)
                raise ProviderUnavailable(f"vsphere {self.name}: {self.server}:{self.port}: {err}") from None
        raise AssertionError("unreachable")

    # Lookups -------------------------------------------------------------------------------------

    def cached(self, key: str, compute: Callable[[], T], ttl: float = float("inf")) -> T:
        """`compute()`, remembered for `ttl` seconds (and at most as long as the session)."""
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry[0] < ttl:
            return cast(T, entry[1])
        value = compute()
        self._cache[key] = (time.monotonic(), value)
        return value

    def find(self, content: Any, path: str, kind: str = "vm") -> Any:
        """An object by its path under the datacenter's `vm` (or `host`) folder (that folder itself for
        ""); ProviderError if none."""
        full = "/".join(part for part in (self.datacenter, kind, path.strip("/")) if part)

        def lookup() -> Any:
            found = content.searchIndex.FindByInventoryPath(full)
            if found is None:
                raise ProviderError(f"vsphere {self.name}: {full} not found")
            return found

        return self.cached(f"path:{full}", lookup)

    def datastore(self, content: Any, name: str) -> Any:
        def lookup() -> Any:
            datacenter = content.searchIndex.FindByInventoryPath(self.datacenter)
            matches = [ds for ds in datacenter.datastore if ds.name == name]
            if not matches:
                raise ProviderError(f"vsphere {self.name}: datastore {name} not found")
            return matches[0]

        return self.cached(f"datastore:{name}", lookup)

    # Tasks ---------------------------------------------------------------------------------------

    def wait(self, content: Any, task: Any, timeout: float) -> None:
        """Wait for a task through a private property collector: vCenter pushes the state change, so
        there is no polling delay and no load from polling; a private collector because several threads
        wait at once and the session's shared one would hand each thread the others' updates. Only the
        state and error are read (all of `info` may not even parse: the simulator puts a snapshot where
        pyvmomi wants a managed entity). TaskLost when the task or the collector is gone."""
        deadline = time.monotonic() + timeout
        collector = content.propertyCollector.CreatePropertyCollector()
        try:
            seen = self._watch(collector, task, deadline, timeout)
        except vmodl.fault.ManagedObjectNotFound:
            # The task is gone, or the collector went with the session it was made in (expired, or vCenter
            # restarted: then the task's id may now name another task). Either way only a look by name
            # can tell what became of the work.
            raise TaskLost(f"vsphere {self.name}: task {task._moId} can no longer be watched") from None
        finally:
            with contextlib.suppress(vmodl.MethodFault, *_NETWORK_ERRORS):
                collector.DestroyPropertyCollector()
        if seen["info.state"] == "error":
            error = seen.get("info.error")
            raise TaskFailed(f"vsphere {self.name}: {getattr(error, 'msg', '') or type(error).__name__}", error)

    @staticmethod
    def relogins(content: Any) -> int:
        """How many times the session was logged in again (see `Stub.relogins`)."""
        return int(getattr(content.propertyCollector._stub, "relogins", 0))

    def _watch(self, collector: Any, task: Any, deadline: float, timeout: float) -> dict[str, Any]:
        watched = _PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error"])
        spec = _PC.FilterSpec(objectSet=[_PC.ObjectSpec(obj=task, skip=False)], propSet=[watched])
        collector.CreateFilter(spec, partialUpdates=True)
        version, seen = "", dict[str, Any]()
        while seen.get("info.state") not in ("success", "error"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _cancel(task)
                raise ProviderError(f"vsphere {self.name}: task timed out after {timeout:.0f}s")
            wait = _PC.WaitOptions(maxWaitSeconds=max(1, int(min(remaining, self.timeout / 2))))
            update = collector.WaitForUpdatesEx(version, wait)
            if update is not None:
                version = update.version
                for found in update.filterSet:
                    for obj in found.objectSet:
                        if obj.kind == "leave":
                            raise vmodl.fault.ManagedObjectNotFound(obj=task)  # deleted while watched
                        seen.update((c.name, c.val) for c in obj.changeSet)
                    for missing in found.missingSet or []:
                        raise vmodl.fault.ManagedObjectNotFound(obj=missing.obj)
        return seen


def _cancel(task: Any) -> None:
    try:
        task.CancelTask()
    except (vmodl.MethodFault, *_NETWORK_ERRORS):
        pass  # not cancellable or already done: the reconciliation deals with whatever it left


# Under this key of an object's properties, the paths vCenter could not read (a fault per property, such
# as NoPermission): absent from the properties, but not for being unset.
MISSING = "(missing)"


def retrieve(content: Any, root: Any, traverse: tuple[Any, str] | None, kind: Any,
             props: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    """Properties of the objects of type `kind` reached from `root` (through `traverse` = (type, path)),
    in one RetrievePropertiesEx round trip per 1,000 objects."""
    select = [_PC.TraversalSpec(type=traverse[0], path=traverse[1], skip=False)] if traverse else []
    spec = _PC.FilterSpec(objectSet=[_PC.ObjectSpec(obj=root, skip=bool(traverse), selectSet=select)],
                          propSet=[_PC.PropertySpec(type=kind, pathSet=props)])
    return retrieve_spec(content, spec)


def retrieve_spec(content: Any, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The objects and properties of a property collector FilterSpec; logs in again once when the
    session turns out to have ended."""
    collector = content.propertyCollector
    for attempt in (1, 2):
        cookie = collector._stub.cookie
        try:
            return _retrieve_all(collector, spec)
        except vim.fault.NotAuthenticated:
            relogin = getattr(collector._stub, "_log_in_again", None)
            if attempt == 2 or relogin is None:
                raise
            relogin(cookie)
    raise AssertionError("unreachable")


def _retrieve_all(collector: Any, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    result = collector.RetrievePropertiesEx([spec], _PC.RetrieveOptions(maxObjects=1000))
    found: list[tuple[Any, dict[str, Any]]] = []
    while result is not None:
        for content_ in result.objects:
            for missing in content_.missingSet or []:
                # A session that ended is reported here, per property, instead of as a fault (by vCenter
                # for some calls, and by the simulator): raise it, so that the caller logs in again
                # rather than taking an inventory of nameless objects for an empty folder.
                fault = missing.fault
                if isinstance(fault, vim.fault.NotAuthenticated):
                    raise fault
            props = {p.name: p.val for p in (content_.propSet or [])}
            if content_.missingSet:
                props[MISSING] = [missing.path for missing in content_.missingSet]
            found.append((content_.obj, props))
        result = collector.ContinueRetrievePropertiesEx(result.token) if result.token else None
    return found


def properties(content: Any, obj: Any, props: list[str]) -> dict[str, Any]:
    """Several properties of one object in one round trip; an unset property is simply absent. (Reading
    a maybe-unset property as an attribute costs a call each, and crashes govmomi's simulator.)"""
    found = retrieve(content, obj, None, type(obj), props)
    return found[0][1] if found else {}
