"""The audit trail: who checked out, returned or changed which VM, from where, in which request.

Two records, written where each operation happens in the core, so the API and the CLI's Redis backend
give the same ones:
- one log line per checkout, return and change, on the `vmpooler.audit` logger:
  `checkout pool=pool1 vm=abc user=jdoe client=10.0.0.5 request=5f0c...` (`vm=` as in the manager's
  lines, so one grep finds a VM's whole story). A refused attempt is `checkout refused code=... reason=...`
  with the same fields: at INFO when the caller was refused for who they are (a missing or wrong token:
  worth seeing, and rare from well-configured clients), at DEBUG when refused for what there is (an
  unknown pool, no capacity, a VM not checked out, a rate limit): a CI fleet polling an empty pool makes
  thousands of those, which the checkout metrics count already. A failed login is always at INFO,
  throttled or not (`login refused`, vmpoolerd/api/login.py): each one is worth seeing.
- each VM's history in Redis (the entries built here; written by the Lua scripts in the same step as the
  state change, see lua/history.lua).

Never a token or a password: the user is the token's user (or the Basic-auth user of the token routes).
Values that a client chose are quoted when they hold anything but plain characters, every control
character escaped (logsafe.py), so no client can forge a field or a line.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from . import logsafe
from .errors import Unauthorized, VmpoolerError

log = logging.getLogger("vmpooler.audit")
# The daemon's log line (vmpoolerd/logs.py), which the CLI's audit lines in the same file share.
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

NOBODY = "-"
# A request id a client may choose (X-Request-Id): bounded, and nothing that could break a log line.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")
_PLAIN = re.compile(r"[A-Za-z0-9._:+/=@,-]{1,256}")
_MAX_VALUE = 200


def new_request_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the client's address (or `cli:<local user>`), the request's id and, once the core knows
    it, the user of the token the request was made with ("-" for none)."""

    client: str = NOBODY
    request_id: str = NOBODY
    user: str = NOBODY

    def as_user(self, user: str | None) -> Caller:
        return replace(self, user=user) if user else self


ANONYMOUS = Caller()


def _value(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return logsafe.quoted(text, _PLAIN, _MAX_VALUE)  # quoted, every control character escaped


def _fields(who: Caller, pool: str, host: str, details: dict[str, object]) -> str:
    pairs = {"pool": pool, "vm": host, "user": who.user, "client": who.client, "request": who.request_id,
             **details}
    return " ".join(f"{key}={_value(value)}" for key, value in pairs.items())


def record(event: str, who: Caller, *, pool: str = NOBODY, host: str = NOBODY, **details: object) -> None:
    """One line for an operation that was done."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s", event, _fields(who, pool, host, details))


def refused(event: str, who: Caller, error: VmpoolerError, *, pool: str = NOBODY, host: str = NOBODY,
            reason: bool = True, level: int | None = None) -> None:
    """One line for an attempt the core refused (see the module's docstring for the levels; `level`
    overrides them). `reason`: False where the error's text may name a token (the token routes')."""
    if level is None:
        level = logging.INFO if isinstance(error, Unauthorized) else logging.DEBUG
    if log.isEnabledFor(level):
        details: dict[str, object] = {"code": error.code.value}
        if reason:
            details["reason"] = str(error)
        log.log(level, "%s refused %s", event, _fields(who, pool, host, details))


@contextmanager
def refusals(event: str, who: Caller, *, pool: str = NOBODY, host: str = NOBODY,
             reason: bool = True) -> Iterator[None]:
    """Log the core's refusal of whatever runs inside, and let it go on up."""
    try:
        yield
    except VmpoolerError as err:
        refused(event, who, err, pool=pool, host=host, reason=reason)
        raise


def entry(event: str, at: str, **who: str) -> str:
    """One history entry (lua/history.lua stores it as given): the time, the event and who did it
    (`user`, `client`, `request` for a client's request; `manager` for the manager's work), and a
    `detail` when there is one. A JSON object, so any value reads back unchanged."""
    return json.dumps({"at": at, "event": event, **{k: v[:_MAX_VALUE] for k, v in who.items() if v}},
                      separators=(",", ":"))


_ORDER = {key: index for index, key in enumerate(("at", "event", "user", "client", "request", "manager", "detail"))}


def read_entry(raw: str) -> dict[str, str]:
    """A stored entry as a flat mapping of strings (anything unreadable is kept as its event)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return {"event": raw}
    if not isinstance(data, dict):
        return {"event": raw}
    # In one order whoever wrote it (Lua's cjson keeps none).
    ordered = sorted(data.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER)))
    return {str(key): str(value) for key, value in ordered}
