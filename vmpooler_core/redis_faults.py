"""Redis errors that are not the request's fault, explained in words that name the setting to fix.

Redis can be unreachable, but also reachable and unwilling: it refuses our credentials (WRONGPASS,
NOAUTH), our ACL user lacks a command or a key (NOPERM), it is a replica (READONLY), too few replicas
are connected (NOREPLICAS), it is out of memory (OOM), loading its data (LOADING), stuck in a script
(BUSY), cut off from its primary (MASTERDOWN); the sentinels refuse us, or the TLS handshake fails. None
of these is a bug of ours or of the request: the API answers 503, the manager backs off, health says
why, the CLI says why. `explain` is the one place that tells them from a bug (None: anything else,
a real bug, such as an error raised by one of our scripts) and words them. No message shows a password.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis import exceptions as errors
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFound
from redis.sentinel import MasterNotFoundError

from .config import RedisSettings
from .errors import BackendUnavailable
from .keys import Keys

LEAST_ACL = "the least ACL is in the README, section 'Redis ACL'"
PASSWORD_VARS = "VMPOOLER_REDIS_USERNAME, VMPOOLER_REDIS_PASSWORD"
SENTINEL_VARS = "VMPOOLER_REDIS_SENTINEL_USERNAME, VMPOOLER_REDIS_SENTINEL_PASSWORD"
_ANY = RedisSettings()  # for `is_fault`, which needs no wording


@dataclass(frozen=True, slots=True)
class Fault:
    """`kind`: one word; a change of kind is a change of state, logged once. `reason`: for people (an
    operator, in an HTTP answer, in health, on the CLI's stderr). `detail`: what Redis said, short, for
    the log. `credentials`: the fault is our credentials or permissions (the CLI's exit code 5)."""

    kind: str
    reason: str
    detail: str = ""
    credentials: bool = False

    def logged(self) -> str:
        """For a log line: the reason and what Redis said (for "unreachable", what the client saw)."""
        if self.kind == "unreachable":
            return self.detail or self.reason
        return f"{self.reason} [{self.detail}]" if self.detail else self.reason


def _username(settings: RedisSettings) -> str | None:
    if settings.username:
        return settings.username
    return urlsplit(settings.url).username if settings.url else None


def _user(settings: RedisSettings) -> str:
    """Whose credentials: "ACL user 'vmpooler'" or "the default user"."""
    name = _username(settings)
    return f"ACL user {name!r}" if name else "the default user"


def _subject(settings: RedisSettings) -> str:
    """The user as a sentence's subject: "redis ACL user 'vmpooler'" or "the redis default user"."""
    name = _username(settings)
    return f"redis ACL user {name!r}" if name else "the redis default user"


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _credentials(settings: RedisSettings, url_setting: str) -> str:
    if settings.url:
        return (f"check the user and password in {url_setting}, or redis.username and redis.password "
                f"({PASSWORD_VARS})")
    return f"check redis.username and redis.password ({PASSWORD_VARS})"


def _authentication(err: errors.RedisError, settings: RedisSettings, url_setting: str) -> Fault:
    text = str(err)
    if "called without any password configured" in text:
        return Fault("password_unneeded", f"redis has no password for the default user, yet one is configured: "
                     f"remove redis.password, or give redis.username for an ACL user ({PASSWORD_VARS})",
                     _short(err), True)
    # NOAUTH: "Authentication required.", or (to a RESP3 HELLO) "HELLO must be called with the client
    # already authenticated ...".
    if getattr(err, "status_code", "") == "NOAUTH" or text.startswith(("Authentication required", "HELLO must")):
        return Fault("no_password", "redis requires a password and none is configured: set redis.password "
                     f"(and redis.username for an ACL user; {PASSWORD_VARS})", _short(err), True)
    return Fault("credentials", f"redis refused the credentials of {_user(settings)}: "
                 f"{_credentials(settings, url_setting)}", _short(err), True)


def _permission(text: str, settings: RedisSettings) -> Fault:
    prefix = Keys().prefix
    command = re.search(r"run the '([^']+)' command", text)
    if command and command.group(1).lower().startswith("sentinel"):
        user = f"ACL user {settings.sentinel_username!r}" if settings.sentinel_username else "the default user"
        return Fault("sentinel_permission", f"the sentinels' {user} may not run {command.group(1).upper()}: grant "
                     f"+{command.group(1).lower()} on the sentinels ({LEAST_ACL})", text, True)
    if command:
        name = command.group(1).lower()
        grant = "+evalsha +eval" if name in ("evalsha", "eval") else f"+{name}"
        return Fault("permission", f"{_subject(settings)} may not run {name.upper()}: grant {grant} "
                     f"({LEAST_ACL})", text, True)
    if "can't run this command" in text:
        return Fault("permission", f"{_subject(settings)} may not run a command of vmpooler's Lua scripts: "
                     f"grant the commands of the least ACL ({LEAST_ACL})", text, True)
    return Fault("keys", f"{_subject(settings)} may not use the keys vmpooler uses: grant ~{prefix}__* "
                 f"({LEAST_ACL})", text, True)


def _response(err: errors.ResponseError, settings: RedisSettings) -> Fault | None:
    text = str(err)
    detail = _short(err)
    if isinstance(err, errors.NoPermissionError) or text.startswith("The user executing the script can't"):
        return _permission(text, settings)
    if isinstance(err, errors.AuthenticationWrongNumberOfArgsError):
        return Fault("credentials", "this redis (before 6) has no ACL users: remove redis.username", detail, True)
    if isinstance(err, errors.ReadOnlyError):
        where = ("the primary the sentinels named has become a replica (a failover under way)" if settings.sentinels
                 else "redis is a read-only replica: point redis at the primary, or use redis.sentinels")
        return Fault("read_only", where, detail)
    if isinstance(err, errors.OutOfMemoryError):
        return Fault("out_of_memory", "redis is out of memory (maxmemory) and refuses writes: raise its maxmemory",
                     detail)
    if isinstance(err, errors.MasterDownError):
        return Fault("master_down", "redis is a replica cut off from its primary (MASTERDOWN)", detail)
    if text.startswith("NOREPLICAS"):
        return Fault("no_replicas", "redis refuses writes: fewer replicas are connected than its "
                     "min-replicas-to-write", detail)
    if text.startswith("BUSY "):
        return Fault("busy", "redis is busy running a script and answers nothing else until it ends", detail)
    return None


def _sentinels(err: errors.ConnectionError, settings: RedisSettings) -> Fault:
    text = str(err)
    hosts = ",".join(f"{h}:{p}" for h, p in settings.sentinels)
    # redis-py collects each sentinel's error as "<client repr> - <exception repr>": a client's repr is
    # long, and an exception's is "AuthenticationError('...')" or, since redis-py 8, "auth:AuthenticationError".
    # Only the exception's class is taken from it.
    kinds = re.findall(r"> - (?:\w+:)?(\w+)", text)
    if "AuthenticationError" in kinds:
        if settings.sentinel_password is None:
            reason = (f"the sentinels ({hosts}) require a password and none is configured: set "
                      f"redis.sentinel_password ({SENTINEL_VARS})")
        else:
            reason = (f"the sentinels ({hosts}) refused the credentials: check redis.sentinel_username and "
                      f"redis.sentinel_password ({SENTINEL_VARS})")
        return Fault("sentinel_credentials", reason, "", True)
    if kinds and len(kinds) >= len(settings.sentinels):
        reason = f"redis is unavailable: no sentinel of {hosts} answered"
        if settings.ssl:
            # redis-py 8 keeps only the class of each sentinel's error: a certificate that failed to verify
            # and a sentinel that is down look the same from here.
            found = _tls(errors.ConnectionError(text), settings) if "CERTIFICATE_VERIFY_FAILED" in text else None
            if found is not None:
                return found
            reason += (" over TLS (if their certificates are not trusted: check redis.ssl_ca_certs and "
                       "redis.ssl_check_hostname)")
        return Fault("unreachable", reason, f"{reason} [{', '.join(kinds)}]")
    return Fault("no_primary", f"no sentinel of {hosts} knows a healthy primary named {settings.master!r}: "
                 "check redis.master", ", ".join(kinds))


def _tls(err: BaseException, settings: RedisSettings) -> Fault | None:
    cause = err.__cause__ or err.__context__
    text = f"{err} {cause or ''}"
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text:
            return Fault("tls_hostname", "the TLS certificate of redis does not name the host it was reached by: "
                         "reach it by a name the certificate has, or set redis.ssl_check_hostname: false",
                         _short(err))
        return Fault("tls_untrusted", "the TLS certificate of redis is not signed by a CA this client trusts: "
                     "set redis.ssl_ca_certs to the certificate of the CA that signed it "
                     "(VMPOOLER_REDIS_SSL_CA_CERTS)", _short(err))
    if "CERTIFICATE_REQUIRED" in text:
        return Fault("tls_client_certificate", "redis requires a client certificate: set redis.ssl_certfile and "
                     "redis.ssl_keyfile", _short(err), True)
    if settings.ssl_certfile is None and isinstance(cause, ConnectionResetError):
        # A server that wants a client certificate may just close the connection (TLS 1.3 sends its
        # alert after the handshake, and it is not always read before the reset).
        return Fault("tls_client_certificate", "redis closed the TLS connection: if it requires a client "
                     "certificate (tls-auth-clients), set redis.ssl_certfile and redis.ssl_keyfile", _short(err), True)
    if isinstance(cause, ssl.SSLError):
        return Fault("tls", f"the TLS handshake with redis failed: {_short(cause)}: check the redis.ssl settings",
                     _short(err))
    return None


def explain(err: BaseException, settings: RedisSettings, *, url_setting: str = "redis.url") -> Fault | None:
    """The fault `err` is, or None when it is none of Redis's: a bug, to be treated as one.
    `url_setting`: how the messages name the url (the CLI's `--redis URL`)."""
    if isinstance(err, (MasterNotFoundError, AsyncMasterNotFound)):
        return _sentinels(err, settings)
    if isinstance(err, errors.AuthenticationError):
        return _authentication(err, settings, url_setting)
    if isinstance(err, BackendUnavailable):
        # Our own word for a Redis that cannot take a change now (primary.py): explained from what Redis
        # said when it said something (NOREPLICAS), else its message says why (a failover under way).
        if isinstance(err.__cause__, errors.RedisError):
            return explain(err.__cause__, settings, url_setting=url_setting)
        return Fault("failover", str(err))
    if isinstance(err, errors.ExecAbortError):
        # A transaction Redis refused as a whole: the refusal of one of its commands (NOREPLICAS, OOM, an
        # ACL rule) comes back as this, without the reason.
        return Fault("refused", "redis refused a transaction (it refuses writes, or a command of it: see "
                     "its log or ACL LOG)", _short(err))
    if isinstance(err, errors.BusyLoadingError):
        return Fault("loading", "redis is loading its data set into memory (after a restart)", _short(err))
    if isinstance(err, errors.ResponseError):
        return _response(err, settings)
    if isinstance(err, (errors.ConnectionError, errors.TimeoutError)):
        found = _tls(err, settings) if settings.tls else None
        if found is not None:
            return found
        if "max number of clients reached" in str(err):
            return Fault("max_clients", "redis has reached its maxclients", _short(err))
        return Fault("unreachable", f"redis is unavailable: {type(err).__name__}", f"{type(err).__name__}: {err}")
    return None


def is_fault(err: BaseException) -> bool:
    """Whether `err` is Redis down or unwilling (to be backed off from and retried), not a bug."""
    return explain(err, _ANY) is not None

