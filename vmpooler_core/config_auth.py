"""The `auth:` section: who may create tokens (an LDAP directory, or a users file), and how failed logins
are throttled.

`auth: ldap:` is read as the original's configurations write it, in both eras: `host`, `port`, `base`
and `user_object` each a string or a list (the original split a string on whitespace: `base` is split
only where every piece is a DN, since a DN may hold a space), and `encryption` either a word
(`start_tls`, `simple_tls`, `none`) or the original's Net::LDAP hash (`{method: start_tls, tls_options:
{...}}`), whose `tls_options` `ca_file` and `verify_mode` are honoured.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

from . import config_keys
from .config import AuthSettings, Encryption, FailedLogins, LdapSettings, Secret
from .config_node import Node, as_int
from .errors import ConfigError

ENCRYPTIONS = ("start_tls", "simple_tls", "none")
log = logging.getLogger("vmpooler.config")
# An attribute type as RFC 4512 writes it: a name, or an OID.
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+")
_AFTER_COMMA = re.compile(r"(?<!\\),\s+")


def _dummy(node: Node, env: Mapping[str, str], failed: FailedLogins) -> AuthSettings:
    """The original's `dummy` provider accepts anyone whose password differs from the user name. It
    refused it unless VMPOOLER_DEBUG was set; so do we, unless it is true."""
    if str(env.get("VMPOOLER_DEBUG", "")).lower() not in ("1", "true", "yes", "on"):
        raise node.error("provider", "the original's `dummy` provider (any user whose password differs from "
                                     "the name) is for tests only: use `provider: users` (password hashes from "
                                     "`vmpooler hash-password`) or `ldap`; for a test deployment, set "
                                     "VMPOOLER_DEBUG=true, as the original required")
    log.warning("%s: auth: provider: dummy (VMPOOLER_DEBUG): ANY user whose password differs from the user "
                "name gets tokens; for tests only", node.source_of("provider"))
    return AuthSettings("dummy", failed_logins=failed)


def auth_settings(node: Node, base_dir: Path, env: Mapping[str, str]) -> AuthSettings | None:
    if not list(node.keys()):
        return None
    provider = node.text("provider", None)
    node.known("ldap", "users", "users_file")  # valid whichever provider is chosen; the other's unused
    failed = _failed_logins(node.child("failed_logins"))
    if provider == "dummy":
        return _dummy(node, env, failed)
    if provider == "ldap":
        return AuthSettings("ldap", ldap=ldap_settings(node.child("ldap"), base_dir), failed_logins=failed)
    if provider == "users":
        users: dict[str, Secret] = {}
        inline = node.child("users")
        for user in inline.keys():
            users[user] = Secret(str(inline.raw(user)))
        file = node.text("users_file", None)
        if file is not None:
            users.update(_read_users_file(base_dir / file, node))
        if not users:
            raise node.error("users", "the users provider needs `users:` or `users_file:`")
        return AuthSettings("users", users=MappingProxyType(users), failed_logins=failed)
    raise node.error("provider", f"unknown auth provider {provider!r} (known: ldap, users; dummy for tests)")


def ldap_settings(node: Node, base_dir: Path) -> LdapSettings:
    node.accept_unused(config_keys.LDAP)
    node.require("host")
    hosts = node.names("host")
    if not hosts or not all(host.strip() for host in hosts):
        raise node.error("host", "must name at least one host, and no empty one")
    encryption, ca_file, verify = _encryption(node)
    own_ca = node.text("ca_file", None)
    if own_ca is not None and ca_file is not None:
        raise node.error("ca_file", "is also set in encryption: tls_options: ca_file; set it once")
    ca_file = own_ca if own_ca is not None else ca_file
    if ca_file is not None:
        ca_file = _ca_file(node, base_dir / ca_file)
    verify = node.flag("verify_certificate", verify)
    return LdapSettings(
        host=tuple(host.strip() for host in hosts),
        port=_ports(node, 636 if encryption == "simple_tls" else 389),
        base=_bases(node),
        user_object=_user_objects(node),
        encryption=encryption,
        ca_file=ca_file,
        verify_certificate=verify,
        timeout=node.integer("timeout", 5, minimum=1),
    )


def _ca_file(node: Node, path: Path) -> str:
    """The path, once it is known to hold certificates ssl can load (else the first login would say so)."""
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise node.error("ca_file", f"no such file: {path}") from None
    except (OSError, ssl.SSLError) as err:
        raise node.error("ca_file", f"{path} holds no certificate ssl can read: {err}") from None
    return str(path)


def _encryption(node: Node) -> tuple[Encryption, str | None, bool]:
    """(method, a CA file from the original's `tls_options`, whether to verify) from `encryption`."""
    raw = node.raw("encryption")
    if raw is None:
        return "start_tls", None, True
    if not isinstance(raw, Mapping):
        return _method(node, "encryption", raw), None, True
    # The original passed this hash to Net::LDAP as it is: `method` and OpenSSL's `tls_options`.
    hash_form = node.child("encryption")
    hash_form.require("method")
    method = _method(hash_form, "method", hash_form.raw("method"))
    options = hash_form.child("tls_options")
    options.accept_unused(("ssl_version", "min_version", "max_version", "ciphers", "options"))
    verify_mode = options.integer("verify_mode", 1)
    if verify_mode not in (0, 1):
        raise options.error("verify_mode", f"must be 0 (VERIFY_NONE) or 1 (VERIFY_PEER) (got {verify_mode})")
    return method, options.text("ca_file", None), verify_mode == 1


def _method(node: Node, key: str, raw: Any) -> Encryption:
    word = str(raw).lstrip(":")  # `:start_tls`, the Ruby symbol, is the same word
    if word not in ENCRYPTIONS:
        raise node.error(key, f"must be start_tls, simple_tls or none (got {raw!r})")
    return cast(Encryption, word)


def _ports(node: Node, default: int) -> tuple[int, ...]:
    raw = node.raw("port")
    if raw is None:
        return (default,)
    values = raw if isinstance(raw, list) else [raw]
    try:
        ports = tuple(as_int(value) for value in values)
    except ValueError:
        raise node.error("port", f"must be a port number or a list of them (got {raw!r})") from None
    if not ports or not all(1 <= port <= 65535 for port in ports):
        raise node.error("port", f"must be between 1 and 65535 (got {raw!r})")
    return ports


def _is_dn(text: str) -> bool:
    try:
        parse_dn(_AFTER_COMMA.sub(",", text))  # ldap3 refuses `dc=example, dc=com`, which directories take
    except LDAPInvalidDnError:
        return False
    return True


def _bases(node: Node) -> tuple[str, ...]:
    raw = node.raw("base")
    bases = node.names("base")
    if isinstance(raw, str) and len(raw.split()) > 1 and all(_is_dn(piece) for piece in raw.split()):
        bases = tuple(raw.split())  # the original's `base.split`: several bases in one string
    for base in bases:
        if not _is_dn(base):
            raise node.error("base", f"{base!r} is not a distinguished name (e.g. ou=people,dc=example,dc=com)")
    return bases


def _user_objects(node: Node) -> tuple[str, ...]:
    found = tuple(word for entry in node.names("user_object") for word in entry.split()) or ("uid",)
    for attribute in found:
        if not _ATTRIBUTE.fullmatch(attribute):
            raise node.error("user_object", f"{attribute!r} is not an attribute name (e.g. uid or cn)")
    return found


def _failed_logins(node: Node) -> FailedLogins:
    defaults = FailedLogins()
    return FailedLogins(
        allowed=node.integer("allowed", defaults.allowed, minimum=1),
        max_delay_user=node.integer("max_delay_user", defaults.max_delay_user, minimum=1),
        max_delay_address=node.integer("max_delay_address", defaults.max_delay_address, minimum=1),
        forget_after=node.integer("forget_after", defaults.forget_after, minimum=1),
    )


def _read_users_file(path: Path, node: Node) -> dict[str, Secret]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise node.error("users_file", f"cannot read {path}: {err.strerror}") from None
    users: dict[str, Secret] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, digest = line.strip().partition(":")
        if not sep or not user or not digest:
            raise ConfigError("expected user:hash", source=str(path), line=number)
        users[user] = Secret(digest)
    return users
