"""Who may create tokens: LDAP (simple bind, as the original: ldap_directory.py) or a local users file of
hashed passwords.

`check` is blocking (LDAP is network I/O); the API calls it in a worker thread. It answers with a
`Verdict`: the user's canonical name when the credentials are right, and, for a directory, which hosts
could not be asked and why, so that the caller can tell "wrong password" (401) from "no directory to ask"
(503) and report the directory's health.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from .config import AuthSettings, Secret

_ITERATIONS = 200_000
# Longer names and passwords are refused without asking anyone: no directory holds such a name, and a
# megabyte password would cost a PBKDF2 round or a directory's bind for nothing.
MAX_USER = 256
MAX_PASSWORD = 1024


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


@dataclass(frozen=True, slots=True)
class HostFault:
    """A directory host that could not judge the credentials: unreachable, silent, or its TLS refused."""

    host: str  # as the log and health name it: `ldap://host:port` or `ldaps://host:port`
    reason: str  # never the password


@dataclass(frozen=True, slots=True)
class Verdict:
    """`user`: the canonical name (as the directory spells it) when the credentials are right, else None.
    `faults`: the hosts that could not be asked; `answered`: those that gave a verdict."""

    user: str | None = None
    faults: tuple[HostFault, ...] = ()
    answered: tuple[str, ...] = ()

    @property
    def unavailable(self) -> bool:
        """Nobody could say: not accepted, and no host answered while at least one was tried."""
        return self.user is None and not self.answered and bool(self.faults)


class Authenticator(Protocol):
    def check(self, user: str, password: str, seconds: float) -> Verdict:
        """Judge the credentials within about `seconds` (a directory's hosts are given what is left)."""
        ...


def plausible(user: str, password: str) -> bool:
    """Worth asking about: an empty password would be an anonymous bind, which a directory "accepts"."""
    return bool(user) and bool(password) and len(user) <= MAX_USER and len(password) <= MAX_PASSWORD


class UsersAuthenticator:
    def __init__(self, users: dict[str, Secret]) -> None:
        self._users = users
        # Compare against a dummy hash for unknown users so timing does not reveal who exists.
        self._dummy = hash_password(secrets.token_hex(8), iterations=_ITERATIONS)

    def check(self, user: str, password: str, seconds: float = 0.0) -> Verdict:
        if not plausible(user, password):
            return Verdict()
        stored = self._users.get(user)
        ok = verify_password(password, stored.reveal() if stored else self._dummy)
        return Verdict(user if ok and stored is not None else None)


class DummyAuthenticator:
    """The original's `dummy` provider, for tests only (config_auth.py allows it with VMPOOLER_DEBUG): any
    user whose password differs from the name."""

    def check(self, user: str, password: str, seconds: float = 0.0) -> Verdict:
        ok = plausible(user, password) and not hmac.compare_digest(user.encode(), password.encode())
        return Verdict(user if ok else None)


def from_settings(settings: AuthSettings | None) -> Authenticator | None:
    if settings is None:
        return None
    if settings.provider == "dummy":
        return DummyAuthenticator()
    if settings.provider == "ldap":
        from .ldap_directory import LdapAuthenticator

        assert settings.ldap is not None
        return LdapAuthenticator(settings.ldap)
    return UsersAuthenticator(dict(settings.users))
