"""Over HTTP: our `vmpoolerd` and the original Ruby vmpooler, API v1, v2 or v3 (api_version.py says how
the version is found), with the same output whichever it is (api_answers.py).

HTTP answers become the core's exceptions, so the front end maps them to exit codes in the one place it
maps the Redis backend's. Our server says what went wrong in each error body's `code`
(vmpooler_core.errors.ErrorCode), which is read first; the original Ruby server sends only
`{"ok": false}`, so for it (and for a code this client does not know yet) the status code decides: 404
NotFound, 503 NoCapacity, 401 Unauthorized, 400 InvalidRequest. A 404 that may be a missing route is never
taken for an unknown pool or VM: the version is checked first, and a route the server lacks is "this
server does not offer X (API vN)". A server that does not connect within the connect timeout, or does not
answer within the read timeout, is Unreachable (exit 6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn
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
from .api_answers import allocated, bare, body_of, code_of, message_of, one_object, vm_document
from .api_version import VERSIONS, KnownServers, split_url
from .base import Allocated, PoolRow, as_int, names_from_rows, rows_from_status

Auth = tuple[str, str] | None

_NOT_FOUND = frozenset({ErrorCode.UNKNOWN_POOL, ErrorCode.NOT_FOUND, ErrorCode.NOT_CHECKED_OUT,
                        ErrorCode.NOT_CONFIGURED})
# Codes with an exception of their own, so that --json reports the server's word for them.
_PRECISE: dict[ErrorCode, type[NotFound] | type[Conflict]] = {
    ErrorCode.UNKNOWN_POOL: UnknownPool, ErrorCode.NOT_CONFIGURED: NotConfigured,
    ErrorCode.NOT_CHECKED_OUT: NotCheckedOut}
_INVALID = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.BAD_HTTP, ErrorCode.BODY_TOO_LARGE,
                      ErrorCode.URL_TOO_LONG, ErrorCode.HEADERS_TOO_LARGE})
_HOW = {"url": "from the URL", "remembered": "remembered", "asked": "asked the server"}


class ApiBackend:
    needs_password = True

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0,
                 connect_timeout: float = 3.0, transport: httpx.BaseTransport | None = None,
                 known: KnownServers | None = None, trace: Callable[[str], None] | None = None) -> None:
        self.root, self.api = split_url(url)
        self.where = self.root
        self.how = "url" if self.api else ""  # how the version was found: "url", "remembered", "asked"
        self._checked = False  # the server answered for self.api during this run
        self.known = known or KnownServers(None)
        self.trace = trace
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

    def describe(self) -> str:
        if self.api is None:
            return f"{self.root} (API version not asked yet)"
        return f"{self.root}, API {self.api} ({_HOW[self.how]})"

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace(text)

    # Which API --------------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        """The API's URL prefix, `<root>/api/<version>`: the version found first, if need be."""
        if self.api is None:
            remembered = self.known.get(self.root)
            if remembered is None:
                self._detect()
            else:
                self.api, self.how = remembered, "remembered"
                self._note(f"{self.root} speaks API {remembered} (remembered in {self.known.path})")
        return f"{self.root}/api/{self.api}"

    def _serves(self, version: str) -> bool:
        """Whether the server answers `GET /api/<version>/vm` with its pool list. A 404 is "no"; any other
        failure (a refused login, a rate limit, an outage) is that failure."""
        response = self._send("GET", f"{self.root}/api/{version}/vm", token=False)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            self._fail(response, what="the pool list", missing=None)
        try:
            return isinstance(response.json(), list)
        except ValueError:
            return False

    def _probe(self, skip: str | None = None) -> str | None:
        return next((version for version in VERSIONS if version != skip and self._serves(version)), None)

    def _detect(self) -> None:
        found = self._probe()
        if found is None:
            tried = ", ".join(f"/api/{version}/vm" for version in VERSIONS)
            raise CliError(f"{self.root} answers none of {tried}: is this a vmpooler?")
        self.api, self.how, self._checked = found, "asked", True
        self.known.remember(self.root, found)
        self._note(f"{self.root} speaks API {found} (asked; remembered in {self.known.path})")

    def _moved(self, no_route: bool) -> bool:
        """After a 404 that may be a missing route (`no_route`: the server said it is): True when the
        server speaks another version now (an upgrade since the version was remembered); then that one
        is used (and remembered). A version the URL named that the server does not serve is an error
        naming the one it does. Asked at most once a run."""
        if self._checked:
            return False
        self._checked = True
        before = str(self.api)
        if self.how == "url":
            if self._serves(before):
                return False
            found = self._probe(skip=before)
            speaks = f"it speaks API {found}: use {self.root} or {self.root}/api/{found}" if found else \
                "nor any other vmpooler API"
            raise CliError(f"{self.root} does not serve API {before} ({self.root}/api/{before}); {speaks}")
        # A bare 404 from a version the server still serves is about the pool or VM asked for. A route
        # it lacks may be in a newer version: ask again from the newest.
        if not no_route and self._serves(before):
            return False
        self._note(f"{self.root}: asking again which API it speaks (remembered: {before})")
        self._detect()
        return self.api != before

    # Requests ---------------------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, body: Any = None, auth: Auth = None, token: bool = True,
              params: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"X-AUTH-TOKEN": self.token} if token and self.token else {}
        try:
            response = self._http.request(method, url, json=body, auth=auth, headers=headers, params=params)
        except httpx.ConnectTimeout as err:
            self._note(f"{method} {url}: no connection")
            raise Unreachable(f"cannot reach {self.where}: no connection within {self.connect_timeout:g}s") from err
        except httpx.TimeoutException as err:
            self._note(f"{method} {url}: no answer")
            raise Unreachable(f"no answer from {self.where} within {self.timeout:g}s") from err
        except httpx.TransportError as err:
            self._note(f"{method} {url}: {err or type(err).__name__}")
            raise Unreachable(f"cannot reach {self.where}: {err or type(err).__name__}") from err
        self._note(f"{method} {response.request.url} -> {response.status_code}")
        return response

    def _request(self, method: str, path: str, *, body: Any = None, auth: Auth = None, token: bool = True,
                 params: Mapping[str, str] | None = None) -> httpx.Response:
        """One request to the API's `path`; sent again, once, to the version the server speaks now when
        the one remembered is gone (nothing was done by a request to a route that does not exist)."""
        response = self._send(method, self.base + path, body=body, auth=auth, token=token, params=params)
        if response.status_code == 404:
            said = body_of(response)
            no_route = code_of(said) is ErrorCode.NO_SUCH_ROUTE
            if (no_route or bare(said)) and self._moved(no_route):
                response = self._send(method, self.base + path, body=body, auth=auth, token=token, params=params)
        return response

    def _call(self, method: str, path: str, *, what: str, body: Any = None, auth: Auth = None, missing: str | None,
              short: str = "not enough ready VMs", conflict: str | None = None,
              params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One request; 2xx gives the JSON object, anything else the matching core exception with the
        server's message, or else the caller's (`missing` for 404, `short` for 503). `what` names the
        route's purpose for "this server does not offer <what>", which is what a 404 says when `missing`
        is None (a route with nothing in its path that could be missing but the route itself)."""
        response = self._request(method, path, body=body, auth=auth, params=params)
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError:
                raise CliError(f"{self.base}{path}: answer is not JSON (HTTP {status})") from None
            if not isinstance(data, dict):
                raise CliError(f"{self.base}{path}: expected a JSON object, got {type(data).__name__}")
            return data
        self._fail(response, what=what, missing=missing, short=short, conflict=conflict, auth=auth)

    def _fail(self, response: httpx.Response, *, what: str, missing: str | None,
              short: str = "not enough ready VMs", conflict: str | None = None, auth: Auth = None) -> NoReturn:
        """Raise the error an unsuccessful answer means."""
        status = response.status_code
        body = body_of(response)
        text = message_of(body)
        code = code_of(body)
        if code is not None:
            raise self._error(code, text or f"HTTP {status}", response, what)
        # The original Ruby server: the status code is all there is to go by.
        if status == 404 and missing is None and text is None:
            raise self._no_route(what, response)
        if status == 404:
            raise NotFound(text or missing or f"{self.where}: HTTP 404")
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

    def _error(self, code: ErrorCode, text: str, response: httpx.Response, what: str) -> Exception:
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
            return self._no_route(what, response, text)
        return CliError(f"{self.where} answered HTTP {response.status_code}: {text}")

    def _no_route(self, what: str, response: httpx.Response, said: str | None = None) -> CliError:
        """A route the server lacks, with the server's own words when it has any."""
        return CliError(f"{self.where} does not offer {what} (API {self.api}: no {response.request.method} "
                        f"{response.request.url.path})" + (f": {said}" if said else ""),
                        kind=str(ErrorCode.NO_SUCH_ROUTE))

    @staticmethod
    def _limited(text: str, response: httpx.Response) -> CliError:
        wait = response.headers.get("Retry-After")
        kind = code_of(body_of(response))
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
        data = self._call("POST", self._vm(), body={name: str(n) for name, n in counts}, what="checkout",
                          missing=f"unknown pool or alias in: {names}", short=f"not enough ready VMs for {names}")
        return allocated(data, {name for name, _ in counts}, self._pool_names, self._pool_of)

    def _pool_names(self) -> list[str] | None:
        names = self._json_or_none(self._vm())
        return [str(name) for name in names] if isinstance(names, list) else None

    def _pool_of(self, host: str) -> str | None:
        """The pool a checked-out VM came from (its `template`), or None when the server does not say."""
        try:
            template = self.show(host)[1].get("template")
        except (CliError, NotFound):
            return None
        return template if isinstance(template, str) and template else None

    def give_back(self, host: str) -> None:
        self._call("DELETE", self._vm(host), what="returning VMs",
                   missing=f"{host} does not exist or is not checked out")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status", what="the status", missing=None)

    def pools(self) -> list[PoolRow]:
        doc = self.status()
        if isinstance(doc.get("pools"), dict):
            return rows_from_status(doc["pools"])
        return self._pools_from_old_server(doc)

    def _pools_from_old_server(self, doc: Mapping[str, Any]) -> list[PoolRow]:
        """A server from before the `pools` block of /status (mid-2016): the names from GET /vm, and
        size and ready from the dashboard's JSON when it has one; what no route says stays None."""
        names = self._pool_names() or []
        dashboard = self._json_or_none("/dashboard/stats/vmpooler/pool", root=True)
        figures: dict[str, Any] = dashboard if isinstance(dashboard, dict) else {}
        empty = set((doc.get("status") or {}).get("empty") or [])
        rows = []
        for name in names:
            found = figures.get(name)
            entry: dict[str, Any] = found if isinstance(found, dict) else {}
            ready = entry.get("ready", 0 if name in empty else None)
            rows.append(PoolRow(name, ready=as_int(ready), size=as_int(entry.get("size"))))
        return rows

    def _json_or_none(self, path: str, root: bool = False) -> Any:
        """An optional route's JSON, or None when the server lacks it or answers something else."""
        response = self._send("GET", (self.root if root else self.base) + path, token=False)
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
        return self._call("GET", "/summary", params=dates, what="the summary", missing=None)

    # One VM --------------------------------------------------------------------------------------

    def show(self, host: str) -> tuple[str, dict[str, Any]]:
        data = self._call("GET", self._vm(host), what="VM details", missing=f"no VM named {host!r}")
        short, doc = one_object(data, host)
        return short, vm_document(doc)

    def modify(self, host: str, change: Mapping[str, Any]) -> None:
        self._call("PUT", self._vm(host), body=dict(change), what="changing VMs", missing=f"no VM named {host!r}")

    def snapshot(self, host: str) -> str:
        data = self._call("POST", self._vm(host) + "/snapshot", what="snapshots", missing=f"no VM named {host!r}")
        return str(one_object(data, host)[1].get("snapshot", ""))

    def revert(self, host: str, snapshot: str) -> None:
        self._call("POST", f"{self._vm(host)}/snapshot/{quote(snapshot, safe='')}", what="snapshots",
                   missing=f"{host} has no snapshot {snapshot!r} (or no VM named {host!r})")

    def disk(self, host: str, size: int) -> str:
        data = self._call("POST", f"{self._vm(host)}/disk/{size}", what="disks", missing=f"no VM named {host!r}")
        return str(one_object(data, host)[1].get("disk", f"+{size}gb"))

    # Tokens (HTTP Basic with the user's password) ------------------------------------------------

    def require_tokens(self) -> None:
        """Asked before a password prompt: without credentials a server with auth answers 401, one
        without 404 (the original and ours alike)."""
        if self._request("GET", self._token_path(), token=False).status_code == 404:
            raise NotConfigured(f"{self.where} has no authentication configured, so it has no tokens")

    def token_vms(self, token: str) -> list[str]:
        # No credentials: the token in the path is the secret (as the original's clients read it).
        data = self._call("GET", self._token_path(token), what="tokens",
                          missing=f"no token {token!r} (or the server has no authentication configured)")
        entry = data.get(token)
        vms = entry.get("vms") if isinstance(entry, dict) else None
        running = vms.get("running") if isinstance(vms, dict) else None
        return [str(host) for host in running] if isinstance(running, list) else []

    def token_create(self, user: str, password: str | None) -> str:
        data = self._call("POST", self._token_path(), auth=(user, password or ""), what="tokens",
                          missing="the server has no authentication configured")
        return str(data.get("token", ""))

    def token_list(self, user: str, password: str | None) -> dict[str, dict[str, str]]:
        # The API answers 404 both for "no tokens" and for "no auth configured"; say both.
        data = self._call("GET", self._token_path(), auth=(user, password or ""), what="tokens",
                          missing=f"{user} has no tokens (or the server has no authentication configured)")
        return {str(t): {"created": str(d.get("created", "")), "last": str(d.get("last") or "never")}
                for t, d in data.items() if isinstance(d, dict)}

    def token_delete(self, token: str, user: str, password: str | None) -> None:
        self._call("DELETE", self._token_path(token), auth=(user, password or ""), what="tokens",
                   missing=f"no token {token!r} (or the server has no authentication configured)")
