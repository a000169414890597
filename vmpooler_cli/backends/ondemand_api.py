"""On-demand requests over HTTP: the /ondemandvm routes of the API version the server speaks (ours and the
original's v3, the original's v2), on the API backend's client, version and error mapping: a server
without them (API v1) says it does not offer on-demand VMs. Only the API takes requests: on-demand VMs
are cloned by the managers, which a client on Redis is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from vmpooler_core.errors import Conflict, ErrorCode, InvalidRequest, NotFound

from ..errors import CliError
from ..exit_codes import ExitCode
from .api import ApiBackend
from .api_answers import body_of, code_of, message_of
from .base import Backend, as_int

ROUTE = "/ondemandvm"
WHAT = "on-demand VMs"


@dataclass(frozen=True, slots=True)
class Progress:
    """A request as the server answers GET /ondemandvm/<id>."""

    request_id: str
    state: str  # "pending", "ready", "failed" or "deleted"
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # alias -> (ready, pending), while pending
    vms: tuple[tuple[str, str], ...] = ()  # (alias, fqdn), once ready
    message: str = ""

    @property
    def ready(self) -> int:
        return sum(ready for ready, _ in self.counts.values()) if self.state == "pending" else len(self.vms)

    @property
    def total(self) -> int:
        return sum(ready + pending for ready, pending in self.counts.values()) if self.counts else len(self.vms)


def progress(request_id: str, status: int, body: dict[str, Any]) -> Progress:
    entries = {key: value for key, value in body.items() if isinstance(value, dict)}
    if status == 202:
        return Progress(request_id, "pending", {alias: (as_int(entry.get("ready")) or 0,
                                                        as_int(entry.get("pending")) or 0)
                                                for alias, entry in entries.items()})
    if body.get("ready") is True:
        vms = []
        for alias, entry in entries.items():
            hosts = entry.get("hostname")
            vms += [(alias, str(host)) for host in ([hosts] if isinstance(hosts, str) else hosts or [])]
        return Progress(request_id, "ready", vms=tuple(vms))
    message = str(body.get("message") or "")
    return Progress(request_id, "deleted" if "deleted" in message else "failed", message=message)


class OnDemandApi:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        # The API backend's request (its timeouts, token, version and errors for an unreachable server).
        response = self.backend._request(method, ROUTE + path, body=body)
        status = response.status_code
        data = body_of(response)
        if 200 <= status < 300:
            if not data:
                raise CliError(f"{self.backend.base}{ROUTE}{path} answered HTTP {status} with no JSON object")
            return status, data
        text = message_of(data) or f"HTTP {status}"
        code = code_of(data)
        if code is ErrorCode.TOO_MANY_INSTANCES or status == 403 and code is None:
            raise InvalidRequest(text)
        if status == 404 and code is None:  # the original: unknown pools (bad_templates) or an unknown request
            bad = data.get("bad_templates")
            if isinstance(bad, list):
                raise NotFound(f"unknown pool or alias: {', '.join(map(str, bad))}")
        if status == 409 and code is None:
            raise Conflict(text)
        # A 404 the server explains is about the request or its pools; a bare one, a route the server lacks.
        self.backend._fail(response, what=WHAT, missing=message_of(data))

    def submit(self, counts: Sequence[tuple[str, int]]) -> str:
        _, data = self._call("POST", "", {name: str(n) for name, n in counts})
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise CliError(f"{self.backend.where} accepted the request but sent no request_id")
        return request_id

    def status(self, request_id: str) -> Progress:
        return progress(request_id, *self._call("GET", "/" + quote(request_id, safe="")))

    def delete(self, request_id: str) -> bool:
        """False when it was deleted before."""
        _, data = self._call("DELETE", "/" + quote(request_id, safe=""))
        return "message" not in data


def for_backend(backend: Backend) -> OnDemandApi:
    if not isinstance(backend, ApiBackend):
        raise CliError("on-demand requests go through the API (its managers clone the VMs): use --api URL or "
                       "VMPOOLER_URL, not --redis", ExitCode.USAGE)
    return OnDemandApi(backend)
