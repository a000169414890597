"""Credentials checked against an LDAP directory, as the original checks them: a simple bind as
`<user_object>=<user>,<base>`, for every base and user object in turn, on every configured host and port
in turn.

Each host gets one connection (opened, with StartTLS when configured, then one bind per DN tried on it),
and that connection is always unbound and closed, whatever failed. A host that cannot be asked
(unreachable, silent past `timeout`, TLS refused or not trusted, or answering that it is busy) is a
`HostFault`, never a wrong password: when no host could be asked the login is answered 503.

TLS: the directory's certificate is verified against `ca_file` (else the system's CAs) and must name the
host, unless `verify_certificate: false` (logged when the authenticator is built). ldap3's own TLS
defaults to no verification at all, and its name check uses `ssl.match_hostname`, which Python 3.12
removed (its fallback refuses IP addresses), so the context and the check here are the standard library's.

The user's name is returned as the directory spells it (the value of the user object attribute of the
entry that was bound, read back), so `JDOE`, ` jdoe` and `jdoe` are one user with one set of tokens.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from .auth import HostFault, Verdict, plausible
from .config import LdapSettings

log = logging.getLogger("vmpooler.auth")

# Bind answers (RFC 4511 result codes) that are the directory's trouble, not the credentials': the host
# is not asked again in this login, and counts as unavailable.
_TROUBLE = {1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
            13: "confidentialityRequired (the directory wants TLS: set encryption)", 51: "busy",
            52: "unavailable", 80: "other"}


_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")
_WRAPPING = re.compile(r"^[(\"'\\]+|[)\"',\\]+$")


def tls_context(settings: LdapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Tls(ldap3.Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """ldap3's TLS hook with a context of ours: verification and the host name check as `ssl` does them."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        # Without it the handshake's small writes wait on the server's delayed ACK: 40 ms a login.
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.socket = self.context.wrap_socket(connection.socket, server_side=False,
                                                     do_handshake_on_connect=do_handshake,
                                                     server_hostname=connection.server.host)


class _Fault(Exception):
    """A host could not be asked; the message says at which step and why."""


def _close(conn: Any) -> None:
    """Unbind (which closes the connection), and close the socket whatever state it is in: a TLS
    handshake that failed leaves ldap3 believing the connection was never opened."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass
    finally:
        sock = getattr(conn, "socket", None)
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _message(err: Exception) -> str:
    """ldap3's text for an error, without the layers of tuple quoting its wrapped ssl and socket errors
    get, nor the C source line of ssl's."""
    text = _SSL_SOURCE.sub("", str(err))
    return _WRAPPING.sub("", text) or type(err).__name__


def _same(name: str) -> str:
    return " ".join(name.split()).casefold()


class LdapAuthenticator:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self.tls = _Tls(tls_context(settings)) if settings.encryption != "none" else None
        self.endpoints = tuple((host, port) for host in settings.host for port in settings.port)
        if settings.encryption == "none":
            log.warning("auth.ldap: encryption is none: every password goes to the directory in clear text")
        elif not settings.verify_certificate:
            log.warning("auth.ldap: verify_certificate is false: the directory's certificate is not checked, "
                        "so whoever can sit between this server and the directory reads every password")

    def where(self, host: str, port: int) -> str:
        if "://" in host:
            return host
        scheme = "ldaps" if self.settings.encryption == "simple_tls" else "ldap"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def check(self, user: str, password: str, seconds: float = 10.0) -> Verdict:
        if not plausible(user, password):
            return Verdict()
        deadline = time.monotonic() + seconds
        faults: list[HostFault] = []
        answered: list[str] = []
        for index, (host, port) in enumerate(self.endpoints):
            where = self.where(host, port)
            try:
                name = self._ask(host, port, user, password, deadline, len(self.endpoints) - index)
            except _Fault as fault:
                faults.append(HostFault(where, str(fault)))
                continue
            answered.append(where)
            if name is not None:
                return Verdict(name, tuple(faults), tuple(answered))
        return Verdict(None, tuple(faults), tuple(answered))

    def _timeout(self, deadline: float, hosts: int = 1) -> int:
        """Whole seconds for each step on a host: the configured timeout, or its share of what is left of
        the login's time among the `hosts` still to ask (so a silent first host leaves time for the next)."""
        left = deadline - time.monotonic()
        if left < 0.5:
            raise _Fault("not asked: the login's time ran out on the hosts before it")
        # ldap3 takes whole seconds: rounded to the nearest (the caller keeps a margin for the rest).
        return max(1, min(self.settings.timeout, round(left / hosts)))

    def _ask(self, host: str, port: int, user: str, password: str, deadline: float, hosts: int) -> str | None:
        """The canonical name when a bind succeeds, None when every DN was refused; _Fault when the host
        cannot be asked. `hosts`: how many are left to ask, this one included."""
        s = self.settings
        timeout = self._timeout(deadline, hosts)
        step = "connecting"
        conn: Any = None
        try:
            # Inside the try: ldap3 refuses a malformed host (e.g. `ldap://[::1`) here.
            server = ldap3.Server(host, port=port, use_ssl=s.encryption == "simple_tls", tls=self.tls,
                                  connect_timeout=timeout, get_info=ldap3.NONE)
            conn = ldap3.Connection(server, receive_timeout=timeout, raise_exceptions=False, auto_referrals=False)
            conn.open()
            if s.encryption == "start_tls":
                step = "StartTLS"
                if not conn.start_tls():
                    raise _Fault("StartTLS: refused by ldap3 (operations in progress)")
            step = "bind"
            for base in s.base or ("",):
                for attribute in s.user_object:
                    self._timeout(deadline)
                    dn = f"{attribute}={escape_rdn(user)}" + (f",{base}" if base else "")
                    conn.user, conn.password, conn.authentication = dn, password, ldap3.SIMPLE
                    if conn.bind():
                        return self._canonical(conn, dn, attribute, user)
                    code = conn.result.get("result") if conn.result else None
                    if code in _TROUBLE:
                        raise _Fault(f"bind: the directory answered {_TROUBLE[code]}")
            return None
        except (LDAPException, OSError, ValueError) as err:
            # OSError: what the socket and ssl layers raise where ldap3 does not wrap it; ValueError: a
            # host or port ldap3 cannot use.
            text = _message(err)
            if "timed out" in text:
                text = f"no answer within {timeout}s"
            raise _Fault(f"{step}: {text}") from None
        finally:
            if conn is not None:
                _close(conn)

    def _canonical(self, conn: Any, dn: str, attribute: str, typed: str) -> str:
        """The name as the bound entry spells it: the value of `attribute` that matches what was typed
        (case and surrounding spaces aside). Lower case when the entry cannot be read back."""
        wanted = _same(typed)
        try:
            found = conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute], size_limit=1)
        except (LDAPException, OSError):
            return wanted
        entries = (conn.response or []) if found else []
        for entry in entries:
            values = entry.get("attributes", {}).get(attribute, [])
            for value in values if isinstance(values, list) else [values]:
                if _same(str(value)) == wanted:
                    return str(value)
        return wanted
