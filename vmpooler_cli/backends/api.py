"""Over HTTP, API v1: our `vmpoolerd` and the original Ruby vmpooler serve the same routes and shapes.

HTTP answers become the core's exceptions, so the front end maps them to exit codes in the one place it
maps the Redis backend's. Our server says what went wrong in each error body's `code`
(vmpooler_core.errors.ErrorCode), which is read first; the original Ruby server sends only
`{"ok": false}`, so for it (and for a code this client does not know yet) the status code decides: 404
NotFound, 503 NoCapacity, 401 Unauthorized, 400 InvalidRequest. A server that does not connect within
the connect timeout, or does not answer within the read timeout, is Unreachable (exit 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from vmpooler_core.errors import (
    Conflict,
    ErrorCode,
    InvalidRequest,
    NoCapacity,
    NotCheckedOut,
    NotConfigured,
    NotFound,
    Unauthorized,
    UnknownPool,
)

from .. import __version__
from ..errors import CliError, Unreachable
from ..exit_codes import ExitCode
from .base import Allocated, PoolRow, as_int, names_from_rows, rows_from_status

Auth = tuple[str, str] | None


def api_root(url: str) -> tuple[str, str]:
    """(server root, API v1 base) from what a user may type: `host:4567`, `http://host:4567/`, or
    the full `http://host:4567/api/v1`."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    root = url[: -len("/api/v1")] if url.endswith("/api/v1") else url
    return root, root + "/api/v1"


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(body: Mapping[str, Any]) -> str | None:
    """The server's own explanation when it gives one (ours does; the original sends {"ok": false})."""
    for key in ("error", "message", "reason"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None


def _code(body: Mapping[str, Any]) -> ErrorCode | None:
    """The error body's machine-readable code; None from a server that sends none (the original) or one
    this client does not know."""
    value = body.get("code")
    if not isinstance(value, str) or value not in ErrorCode.__members__.values():
        return None
    return ErrorCode(value)


_NOT_FOUND = frozenset({ErrorCode.UNKNOWN_POOL, ErrorCode.NOT_FOUND, ErrorCode.NOT_CHECKED_OUT,
                        ErrorCode.NOT_CONFIGURED})
# Codes with an exception of their own, so that --json reports the server's word for them.
_PRECISE: dict[ErrorCode, type[NotFound] | type[Conflict]] = {
    ErrorCode.UNKNOWN_POOL: UnknownPool, ErrorCode.NOT_CONFIGURED: NotConfigured,
    ErrorCode.NOT_CHECKED_OUT: NotCheckedOut}
_INVALID = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.BAD_HTTP, ErrorCode.BODY_TOO_LARGE,
                      ErrorCode.URL_TOO_LONG, ErrorCode.HEADERS_TOO_LARGE})


def _one_object(body: Mapping[str, Any], host: str) -> tuple[str, dict[str, Any]]:
    """The per-VM object of `{"ok": true, "<host>": {...}}`: the server keys it by the short name
    (it may shorten an FQDN we sent), so take the one object-valued key."""
    for key, value in body.items():
        if key != "ok" and isinstance(value, dict):
            return str(key), value
    raise CliError(f"unexpected answer for {host}: no VM object in {sorted(body)}")


class ApiBackend:
    needs_password = True

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0,
                 connect_timeout: float = 3.0, transport: httpx.BaseTransport | None = None) -> None:
        self.root, self.base = api_root(url)
        self.where = self.root
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        headers = {"User-Agent": f"vmpooler-cli/{__version__}", "Accept": "application/json"}
        # Every request goes to this one server. Over plain http no TLS is ever negotiated, so skip
        # building a verifying SSL context: loading the CA bundle costs more than the whole request.
        # Over https certificates are verified as usual.
        https = self.root.startswith("https://")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), headers=headers,
                                  transport=transport, follow_redirects=False, verify=https)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, body: Any = None, auth: Auth = None, root: bool = False,
              token: bool = True, params: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"X-AUTH-TOKEN": self.token} if token and self.token else {}
        url = (self.root if root else self.base) + path
        try:
            return self._http.request(method, url, json=body, auth=auth, headers=headers, params=params)
        except httpx.ConnectTimeout as err:
            raise Unreachable(f"cannot reach {self.where}: no connection within {self.connect_timeout:g}s") from err
        except httpx.TimeoutException as err:
            raise Unreachable(f"no answer from {self.where} within {self.timeout:g}s") from err
        except httpx.TransportError as err:
            raise Unreachable(f"cannot reach {self.where}: {err or type(err).__name__}") from err

    def _call(self, method: str, path: str, *, body: Any = None, auth: Auth = None, missing: str,
              short: str = "not enough ready VMs", conflict: str | None = None,
              params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One request; 2xx gives the JSON object, anything else the matching core exception with the
        server's message, or else the caller's (`missing` for 404, `short` for 503)."""
        response = self._send(method, path, body=body, auth=auth, params=params)
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError:
                raise CliError(f"{self.where}{path}: answer is not JSON (HTTP {status})") from None
            if not isinstance(data, dict):
                raise CliError(f"{self.where}{path}: expected a JSON object, got {type(data).__name__}")
            return data
        body = _body(response)
        text = _message(body)
        code = _code(body)
        if code is not None:
            raise self._error(code, text or f"HTTP {status}", response, path)
        # The original Ruby server: the status code is all there is to go by.
        if status == 404:
            raise NotFound(text or missing)
        if status == 429:
            raise self._limited(text or "rate limit exceeded", response)
        if status == 401 or status == 403:
            raise Unauthorized(text or ("wrong user or password" if auth else
                                        "this needs a valid token: pass --token or set VMPOOLER_TOKEN"))
        if status == 503:
            raise NoCapacity(text or short, "")
        if status == 400 or status == 422:
            raise InvalidRequest(text or f"the server rejected the request (HTTP {status})")
        if status == 409:
            raise Conflict(text or conflict or "conflict")
        raise CliError(f"{self.where} answered HTTP {status}" + (f": {text}" if text else ""))

    def _error(self, code: ErrorCode, text: str, response: httpx.Response, path: str) -> Exception:
        """The exception for an error our server explained with a code."""
        precise = _PRECISE.get(code)
        if precise is not None:
            return precise(text)
        if code in _NOT_FOUND:
            return NotFound(text)
        if code in _INVALID:
            return InvalidRequest(text)
        if code is ErrorCode.NO_CAPACITY:
            return NoCapacity(text, "")
        if code is ErrorCode.BACKEND_UNAVAILABLE:
            return Unreachable(f"{self.where} cannot reach its Redis (or directory): {text}")
        if code is ErrorCode.DIRECTORY_UNAVAILABLE:
            return Unreachable(f"{self.where} cannot reach its LDAP directory: {text}")
        if code is ErrorCode.UNAUTHORIZED:
            return Unauthorized(text)
        if code in (ErrorCode.RATE_LIMITED, ErrorCode.TOO_MANY_VMS, ErrorCode.TOO_MANY_CONNECTIONS):
            return self._limited(text, response)
        if code is ErrorCode.CONFLICT:
            return Conflict(text)
        if code in (ErrorCode.NO_SUCH_ROUTE, ErrorCode.METHOD_NOT_ALLOWED):
            return CliError(f"{self.where} does not offer {response.request.method} {self.base}{path}: {text}")
        return CliError(f"{self.where} answered HTTP {response.status_code}: {text}")

    @staticmethod
    def _limited(text: str, response: httpx.Response) -> CliError:
        wait = response.headers.get("Retry-After")
        kind = _code(_body(response))
        return CliError(text + (f"; retry after {wait}s" if wait else ""), ExitCode.LIMITED,
                        kind=str(kind) if kind else None)

    # Paths: every route this backend uses is named here ------------------------------------------

    @staticmethod
    def _vm(host: str | None = None) -> str:
        return "/vm" if host is None else "/vm/" + quote(host, safe="")

    @staticmethod
    def _token_path(token: str | None = None) -> str:
        return "/token" if token is None else "/token/" + quote(token, safe="")

    # Pools ---------------------------------------------------------------------------------------

    def checkout(self, counts: Sequence[tuple[str, int]]) -> Allocated:
        names = ", ".join(name for name, _ in counts)
        # Counts as strings: the original's clients send {"pool": "1"} and every server takes it.
        data = self._call("POST", self._vm(), body={name: str(n) for name, n in counts},
                          missing=f"unknown pool or alias in: {names}", short=f"not enough ready VMs for {names}")
        domain = data.get("domain") if isinstance(data.get("domain"), str) else None
        pairs: list[tuple[str, str]] = []
        for pool, entry in data.items():
            if not isinstance(entry, dict):
                continue  # "ok", "domain"
            hosts = entry.get("hostname")
            for host in [hosts] if isinstance(hosts, str) else (hosts or []):
                pairs.append((str(pool), str(host)))
        return Allocated(tuple(pairs), domain)

    def give_back(self, host: str) -> None:
        self._call("DELETE", self._vm(host), missing=f"{host} does not exist or is not checked out")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status", missing=f"{self.base}/status does not exist: is this a vmpooler?")

    def pools(self) -> list[PoolRow]:
        doc = self.status()
        if isinstance(doc.get("pools"), dict):
            return rows_from_status(doc["pools"])
        return self._pools_from_old_server(doc)

    def _pools_from_old_server(self, doc: Mapping[str, Any]) -> list[PoolRow]:
        """A server from before the `pools` block of /status (mid-2016): the names from GET /vm, and
        size and ready from the dashboard's JSON when it has one; what no route says stays None."""
        names = self._json_or_none(self._vm()) or []
        dashboard = self._json_or_none("/dashboard/stats/vmpooler/pool", root=True)
        figures: dict[str, Any] = dashboard if isinstance(dashboard, dict) else {}
        empty = set((doc.get("status") or {}).get("empty") or [])
        rows = []
        for name in names if isinstance(names, list) else []:
            found = figures.get(name)
            entry: dict[str, Any] = found if isinstance(found, dict) else {}
            ready = entry.get("ready", 0 if name in empty else None)
            rows.append(PoolRow(str(name), ready=as_int(ready), size=as_int(entry.get("size"))))
        return rows

    def _json_or_none(self, path: str, root: bool = False) -> Any:
        """An optional route's JSON, or None when the server lacks it or answers something else."""
        response = self._send("GET", path, root=root, token=False)
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def names(self) -> list[str]:
        try:
            return names_from_rows(self.pools())
        except (CliError, NotFound, ValueError):
            return []

    def summary(self, first: str | None, last: str | None) -> dict[str, Any]:
        dates = {key: value for key, value in (("from", first), ("to", last)) if value is not None}
        return self._call("GET", "/summary", params=dates, missing=f"{self.base}/summary does not exist")

    # One VM --------------------------------------------------------------------------------------

    def show(self, host: str) -> tuple[str, dict[str, Any]]:
        return _one_object(self._call("GET", self._vm(host), missing=f"no VM named {host!r}"), host)

    def modify(self, host: str, change: Mapping[str, Any]) -> None:
        self._call("PUT", self._vm(host), body=dict(change), missing=f"no VM named {host!r}")

    def snapshot(self, host: str) -> str:
        data = self._call("POST", self._vm(host) + "/snapshot", missing=f"no VM named {host!r}")
        return str(_one_object(data, host)[1].get("snapshot", ""))

    def revert(self, host: str, snapshot: str) -> None:
        self._call("POST", f"{self._vm(host)}/snapshot/{quote(snapshot, safe='')}",
                   missing=f"{host} has no snapshot {snapshot!r} (or no VM named {host!r})")

    def disk(self, host: str, size: int) -> str:
        data = self._call("POST", f"{self._vm(host)}/disk/{size}", missing=f"no VM named {host!r}")
        return str(_one_object(data, host)[1].get("disk", f"+{size}gb"))

    # Tokens (HTTP Basic with the user's password) ------------------------------------------------

    def require_tokens(self) -> None:
        """Asked before a password prompt: without credentials a server with auth answers 401, one
        without 404 (the original and ours alike)."""
        if self._send("GET", self._token_path(), token=False).status_code == 404:
            raise NotConfigured(f"{self.where} has no authentication configured, so it has no tokens")

    def token_vms(self, token: str) -> list[str]:
        # No credentials: the token in the path is the secret (as the original's clients read it).
        data = self._call("GET", self._token_path(token),
                          missing=f"no token {token!r} (or the server has no authentication configured)")
        entry = data.get(token)
        vms = entry.get("vms") if isinstance(entry, dict) else None
        running = vms.get("running") if isinstance(vms, dict) else None
        return [str(host) for host in running] if isinstance(running, list) else []

    def token_create(self, user: str, password: str | None) -> str:
        data = self._call("POST", self._token_path(), auth=(user, password or ""),
                          missing="the server has no authentication configured")
        return str(data.get("token", ""))

    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]:
        # The API answers 404 both for "no tokens" and for "no auth configured"; say both.
        data = self._call("GET", self._token_path(), auth=(user, password or ""),
                          missing=f"{user} has no tokens (or the server has no authentication configured)")
        return {str(t): {"created": str(d.get("created", "")), "last": str(d.get("last") or "never")}
                for t, d in data.items() if isinstance(d, dict)}

    def token_delete(self, token: str, user: str, password: str | None) -> None:
        self._call("DELETE", self._token_path(token), auth=(user, password or ""),
                   missing=f"no token {token!r} (or the server has no authentication configured)")
