"""The HTTPS connections to vCenter: never a request on a connection the server has closed, a request
re-sent only when it cannot have been acted on, and an expired session logged in again under the call.

pyvmomi keeps idle connections for 900 s; servers and the proxies in front of them close them much
sooner, so after a quiet spell the first calls went out on connections already closed, and a clone or a
destroy failed with "Remote end closed connection without response" although vCenter had, or had not,
done it: nobody could tell. `Stub` (pyvmomi's SOAP stub, which every managed object of a session calls
through) therefore

- keeps an idle connection `idle_timeout` seconds at most (below what servers keep), and before reusing
  one checks that the server has not closed it (a closed one reads as readable: its FIN or TLS
  close_notify is waiting);
- when a call fails on its connection, sends it again once on a fresh one if it cannot have been acted
  on: the request never went out whole, or the call only reads (`_READS`). A call that changes vCenter
  (a clone, a destroy) whose request went out and whose answer was lost raises `Unanswered`: only
  vCenter can say whether it happened, and the provider asks it (vsphere.py);
- on NotAuthenticated (the session expired, or vCenter restarted) logs in again, once for all the
  threads that hit it, and sends the call again: vCenter refused it, so it did not happen.
"""

from __future__ import annotations

import http.client
import logging
import select
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pyVmomi import SoapAdapter
from pyVmomi import vim as _vim

vim: Any = _vim
_SoapStub: Any = SoapAdapter.SoapStubAdapter  # untyped to a type checker, as the rest of pyvmomi
log = logging.getLogger("vmpooler.providers.vsphere")

# Calls that only read (or create session-private objects that are harmless twice): sending one again
# cannot change vCenter. "Fetch" is pyvmomi's property accessor.
_READS = frozenset({
    "Fetch", "RetrieveServiceContent", "RetrieveProperties", "RetrievePropertiesEx",
    "ContinueRetrievePropertiesEx", "CancelRetrievePropertiesEx", "WaitForUpdatesEx", "WaitForUpdates",
    "CreatePropertyCollector", "CreateFilter", "DestroyPropertyCollector", "FindByInventoryPath",
    "FindChild", "FindByUuid", "FindByDnsName", "FindAllByDnsName", "FindByIp", "FindAllByUuid",
    "CurrentTime", "Login", "Logout", "SessionIsActive", "QueryEvents", "CancelTask",
})
# Failures of the connection itself.
NETWORK_ERRORS = (OSError, http.client.HTTPException, EOFError)


class Unanswered(Exception):
    """A call that changes vCenter was sent and its answer lost: it may or may not have happened."""

    def __init__(self, method: str, cause: BaseException) -> None:
        super().__init__(f"{method}: no answer ({cause or type(cause).__name__})")
        self.method = method


class _Tracked:
    """What `Stub` needs to know of a connection: whether it came from the idle pool, and whether the
    request on it went out whole."""

    pooled = False  # sitting in the idle pool
    reused = False  # taken from the idle pool for the current call
    sent = False  # the current request was handed to the kernel in full

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.sent = False
        super().request(*args, **kwargs)  # type: ignore[misc]
        self.sent = True


class _HTTPSConnection(_Tracked, http.client.HTTPSConnection):
    pass


class _HTTPConnection(_Tracked, http.client.HTTPConnection):
    pass


def _closed_by_server(conn: Any) -> bool:
    """An idle connection with anything to read has been closed by the server (FIN, TLS close_notify,
    reset) or is out of step: either way it must not carry a request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Stub(_SoapStub):  # type: ignore[misc]
    """pyvmomi's stub with the connection rules above; `relogin` is set once the session is logged in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = getattr(self, "scheme", None) is http.client.HTTPConnection
        self.scheme: type[http.client.HTTPConnection] = _HTTPConnection if plain else _HTTPSConnection
        self.relogin: Callable[[], None] | None = None
        self._current = threading.local()  # the connection of this thread's call
        self._login_lock = threading.Lock()
        # Sessions logged in through this stub after the first: a task id read before one may name another
        # task after it (a restarted vCenter numbers its tasks afresh).
        self.relogins = 0

    def GetConnection(self) -> Any:
        while True:
            conn = super().GetConnection()
            if conn.pooled and _closed_by_server(conn):
                conn.close()  # the server's keep-alive timeout ran out: take the next, or a new one
                continue
            conn.reused, conn.pooled = conn.pooled, False
            self._current.conn = conn
            return conn

    def ReturnConnection(self, conn: Any) -> None:
        conn.pooled = True
        super().ReturnConnection(conn)

    def InvokeMethod(self, mo: Any, info: Any, args: Any, outerStub: Any = None) -> Any:
        method = info.wsdlName
        resent = relogged = False
        while True:
            cookie = self.cookie
            self._current.conn = None
            try:
                return super().InvokeMethod(mo, info, args, outerStub)
            except vim.fault.NotAuthenticated:
                if relogged or method in ("Login", "Logout") or self.relogin is None:
                    raise
                relogged = True
                self._log_in_again(cookie)
            except NETWORK_ERRORS as err:
                conn = self._current.conn
                if conn is None:
                    raise  # no connection could be made at all: vCenter is unreachable
                safe = not conn.sent or method in _READS
                if safe and conn.reused and not resent:
                    resent = True  # the server had closed it: a fresh connection, once
                    continue
                if not safe:
                    raise Unanswered(method, err) from err
                raise

    def _log_in_again(self, stale_cookie: str) -> None:
        """Log in again unless another thread already did since `stale_cookie` was sent."""
        with self._login_lock:
            if self.cookie != stale_cookie:
                return
            log.info("vsphere session expired: logging in again")
            assert self.relogin is not None
            self.relogin()
            self.relogins += 1
