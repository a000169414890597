"""Who may create tokens: LDAP (simple bind, as the original) or a local users file of hashed passwords.

`authenticate` is blocking (LDAP is network I/O); the API calls it in a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Protocol

from .config import AuthSettings, LdapSettings, Secret

log = logging.getLogger("vmpooler.auth")
_ITERATIONS = 200_000


def hash_password(password: str, iterations: int = _ITERATIONS) -> str:
    """`pbkdf2_sha256$<iterations>$<salt>$<hash>`, the format of the users file."""
    salt = secrets.token_urlsafe(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$", 3)
        rounds = int(iterations)
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256" or not 1 <= rounds <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds)
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


class Authenticator(Protocol):
    def authenticate(self, user: str, password: str) -> bool: ...


class UsersAuthenticator:
    def __init__(self, users: dict[str, Secret]) -> None:
        self._users = users
        # Compare against a dummy hash for unknown users so timing does not reveal who exists.
        self._dummy = hash_password(secrets.token_hex(8), iterations=_ITERATIONS)

    def authenticate(self, user: str, password: str) -> bool:
        stored = self._users.get(user)
        ok = verify_password(password, stored.reveal() if stored else self._dummy)
        return ok and stored is not None


class LdapAuthenticator:
    """Simple bind as `<user_object>=<user>,<base>`, each base and user_object tried in turn.

    `timeout` is whole seconds: ldap3 on Linux packs the receive timeout into SO_RCVTIMEO with
    struct.pack("LL", ...), which refuses a float.
    """

    def __init__(self, settings: LdapSettings, timeout: int = 5) -> None:
        self.settings = settings
        self.timeout = timeout

    def authenticate(self, user: str, password: str) -> bool:
        import ldap3
        from ldap3.core.exceptions import LDAPException
        from ldap3.utils.dn import escape_rdn

        if not user or not password:
            return False  # an empty password would be an anonymous bind, which "succeeds"
        s = self.settings
        for base in s.base or ("",):
            for attribute in s.user_object:
                dn = f"{attribute}={escape_rdn(user)}" + (f",{base}" if base else "")
                try:
                    # Inside the try: ldap3 refuses a malformed host (e.g. `ldap://[::1`) here.
                    server = ldap3.Server(s.host, port=s.port, use_ssl=s.encryption == "simple_tls",
                                          connect_timeout=self.timeout)
                    conn = ldap3.Connection(server, user=dn, password=password, receive_timeout=self.timeout)
                    if s.encryption == "start_tls":
                        conn.open()
                        conn.start_tls()
                    if conn.bind():
                        conn.unbind()
                        return True
                # OSError: what the socket and ssl layers raise where ldap3 does not wrap it. Logged
                # without a traceback: a directory that is down is an outage, not a bug.
                except (LDAPException, OSError) as err:
                    log.warning("ldap bind for %s at %s:%s failed: %s: %s", user, s.host, s.port,
                                type(err).__name__, err)
        return False


def from_settings(settings: AuthSettings | None) -> Authenticator | None:
    if settings is None:
        return None
    if settings.provider == "ldap":
        assert settings.ldap is not None
        return LdapAuthenticator(settings.ldap)
    return UsersAuthenticator(dict(settings.users))
