"""The route table: every route the server answers, each one entry naming its handler, its rate-limit class
and whether its handler counts its own rate; served under `/api/v1` and again unversioned (the
original's `API::Reroute`), API v3 (today's original) under `/api/v3`, plus the dashboard, the probes and
the OpenAPI documents.

All of it is one Starlette route, `PathTable`: fixed paths are a dict lookup and the few paths with
parameters one regex each, after the version prefix is stripped once. (Starlette's own Router tries
its routes one by one, each with a regex and a scope copy; at a fraction of a millisecond per request
that scan was a visible share of the CPU.) The table answers every HTTP request itself: an unknown path
gets a JSON 404, and a known path with a wrong method a 405 listing every method of the path.

The matched entry is put in the scope as `route`, as Starlette does for its own routes, so the guard
can time requests by route (guard.py).

Rate classes follow the original's (its vm_creation, vm_deletion and the rest): POSTs under `/vm` are
`checkout` (disk and snapshot requests too), DELETEs under `/vm` `return`, everything else `other`; v3's
on-demand requests likewise.
Not limited: the probes (a health probe answered 429 would take a healthy server out of service; a
scrape answered 429 leaves a gap in the graphs), the OpenAPI document and the dashboard's page and
files, which do no Redis work.

The unversioned disk route takes POST as the versioned one does (the original rerouted PUT there, to a
route that only existed for POST, so it could never succeed) and also PUT for its old clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from vmpooler_core.errors import ErrorCode

from . import (
    dashboard,
    dashboard_stats,
    openapi,
    openapi_v3,
    routes_health,
    routes_ondemand,
    routes_pool_config,
    routes_status,
    routes_token,
    routes_v3,
    routes_vm,
)
from .endpoint import Endpoint, Handler, endpoint
from .errors import error_response
from .limits import RateClass

PREFIX = "/api/v1"
V3_PREFIX = "/api/v3"
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # template, relative to the namespace it is served in
    method: str
    handler: Handler
    rate: RateClass | None  # None: not rate limited
    # The handler's one Lua script also counts the request's rate (checkout, return): the endpoint
    # must not count it a second time, in a second round trip.
    counts_own_rate: bool = False
    endpoint: Endpoint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counted_before = self.rate if not self.counts_own_rate else None
        object.__setattr__(self, "endpoint", endpoint(self.handler, counted_before))


CHECKOUT, RETURN, OTHER = RateClass.CHECKOUT, RateClass.RETURN, RateClass.OTHER
_DISK = "/vm/{hostname}/disk/{size}"

# The API: under /api/v1 and unversioned alike.
API: tuple[Route, ...] = (
    Route("/status", "GET", routes_status.get_status, OTHER),
    Route("/summary", "GET", routes_status.get_summary, OTHER),
    Route("/summary/{route}", "GET", routes_status.get_summary, OTHER),
    Route("/summary/{route}/{key}", "GET", routes_status.get_summary, OTHER),
    Route("/token", "GET", routes_token.list_tokens, OTHER),
    Route("/token", "POST", routes_token.create_token, OTHER),
    Route("/token/{token}", "GET", routes_token.show_token, OTHER),
    Route("/token/{token}", "DELETE", routes_token.revoke_token, OTHER),
    Route("/vm", "GET", routes_vm.list_pools, OTHER),
    Route("/vm", "POST", routes_vm.checkout_body, CHECKOUT, counts_own_rate=True),
    Route("/vm/{hostname}", "GET", routes_vm.get_vm, OTHER),
    Route("/vm/{hostname}", "PUT", routes_vm.modify_vm, OTHER),
    Route("/vm/{hostname}", "DELETE", routes_vm.return_vm, RETURN, counts_own_rate=True),
    Route("/vm/{hostname}", "POST", routes_vm.checkout_path, CHECKOUT, counts_own_rate=True),
    Route(_DISK, "POST", routes_vm.add_disk, CHECKOUT),
    Route("/vm/{hostname}/snapshot", "POST", routes_vm.take_snapshot, CHECKOUT),
    Route("/vm/{hostname}/snapshot/{snapshot}", "POST", routes_vm.revert_snapshot, CHECKOUT),
)

VERSIONED_ONLY: tuple[Route, ...] = (
    Route("/openapi.json", "GET", openapi.serve, None),
)

UNVERSIONED_ONLY: tuple[Route, ...] = (
    Route(_DISK, "PUT", routes_vm.add_disk, OTHER),  # counted by method, as the original did
    Route("/", "GET", dashboard.root, None),
    Route("/dashboard", "GET", dashboard.root, None),
    Route("/dashboard/", "GET", dashboard.page, None),
    Route("/dashboard/static/{name}", "GET", dashboard.asset, None),
    Route("/dashboard/stats/vmpooler/pool", "GET", dashboard_stats.pool_stats, OTHER),
    Route("/dashboard/stats/vmpooler/running", "GET", dashboard_stats.running_stats, OTHER),
    Route("/dashboard/stats/vmpooler/history", "GET", dashboard_stats.history, OTHER),
    Route("/healthcheck", "GET", routes_health.healthcheck, None),
    Route("/metrics", "GET", routes_health.metrics, None),
)

# API v3: its own handlers where it answers differently from v1 (routes_v3.py says how) or v1 has no such
# route; v1's own for the rest (summary, tokens, the pool list). A new v3 route module: import it above,
# add its routes here and their operations to openapi_v3.py (tests/api/test_v3_api.py checks that the
# document lists exactly the routes served).
V3_OWN: tuple[Route, ...] = (
    Route("/openapi.json", "GET", openapi_v3.serve, None),
    Route("/status", "GET", routes_v3.get_status, OTHER),
    Route("/poolstat", "GET", routes_v3.poolstat, OTHER),
    Route("/totalrunning", "GET", routes_v3.total_running, OTHER),
    Route("/vm", "POST", routes_v3.checkout_body, CHECKOUT, counts_own_rate=True),
    Route("/vm/{hostname}", "GET", routes_v3.get_vm, OTHER),
    Route("/vm/{hostname}", "PUT", routes_v3.modify_vm, OTHER),
    Route("/vm/{hostname}", "DELETE", routes_v3.return_vm, RETURN, counts_own_rate=True),
    Route("/vm/{hostname}", "POST", routes_v3.checkout_path, CHECKOUT, counts_own_rate=True),
    Route(_DISK, "POST", routes_v3.add_disk, CHECKOUT),
    Route("/vm/{hostname}/snapshot", "POST", routes_v3.take_snapshot, CHECKOUT),
    Route("/vm/{hostname}/snapshot/{snapshot}", "POST", routes_v3.revert_snapshot, CHECKOUT),
    Route("/full_config", "GET", routes_v3.full_config, OTHER),
    # On-demand VMs (routes_ondemand.py). One template for the request id and the POST's `a+a+b`.
    Route("/ondemandvm", "POST", routes_ondemand.submit_body, CHECKOUT),
    Route("/ondemandvm/{request_id}", "POST", routes_ondemand.submit_path, CHECKOUT),
    Route("/ondemandvm/{request_id}", "GET", routes_ondemand.status, OTHER),
    Route("/ondemandvm/{request_id}", "DELETE", routes_ondemand.delete, RETURN),
    # The pool configuration API (behind `experimental_features`).
    Route("/config", "GET", routes_pool_config.get_config, OTHER),
    Route("/config/poolsize", "POST", routes_pool_config.set_sizes, OTHER),
    Route("/config/poolsize/{pool}", "DELETE", routes_pool_config.reset_size, OTHER),
    Route("/config/pooltemplate", "POST", routes_pool_config.set_templates, OTHER),
    Route("/config/pooltemplate/{pool}", "DELETE", routes_pool_config.reset_template, OTHER),
    Route("/config/clonetarget", "POST", routes_pool_config.set_clone_targets, OTHER),
    Route("/poolreset", "POST", routes_pool_config.reset_pools, OTHER),
)
_V3_OWNED = {(route.path, route.method) for route in V3_OWN}
V3: tuple[Route, ...] = (*V3_OWN, *(route for route in API if (route.path, route.method) not in _V3_OWNED))

Methods = dict[str, Route]


class Table:
    """The routes of one namespace (versioned or not): template -> method -> route. HEAD is answered
    by a path's GET."""

    def __init__(self, routes: Iterable[Route]) -> None:
        by_path: dict[str, Methods] = {}
        for route in routes:
            methods = by_path.setdefault(route.path, {})
            assert route.method not in methods, f"{route.method} {route.path} is in the table twice"
            methods[route.method] = route
        self.fixed: dict[str, Methods] = {}
        self.patterns: list[tuple[re.Pattern[str], Methods]] = []
        for template, methods in by_path.items():
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
            if "{" in template:
                regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
                self.patterns.append((re.compile(regex), methods))
            else:
                self.fixed[template] = methods

    def find(self, path: str) -> tuple[Methods, dict[str, str]] | None:
        """The path's routes by method, and its path parameters."""
        fixed = self.fixed.get(path)
        if fixed is not None:
            return fixed, {}
        for regex, methods in self.patterns:
            match = regex.fullmatch(path)
            if match:
                return methods, match.groupdict()
        return None


class PathTable(BaseRoute):
    def __init__(self) -> None:
        self.versioned = Table((*VERSIONED_ONLY, *API))
        self.v3 = Table(V3)
        self.unversioned = Table((*API, *UNVERSIONED_ONLY))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        if path.startswith(PREFIX + "/"):
            found = self.versioned.find(path[len(PREFIX):])
        elif path.startswith(V3_PREFIX + "/"):
            found = self.v3.find(path[len(V3_PREFIX):])
        else:
            found = self.unversioned.find(path)
        if found is None:
            return Match.FULL, {"path_params": {}, "vmpooler.methods": None}
        methods, params = found
        child: Scope = {"path_params": params, "vmpooler.methods": methods}
        route = methods.get(scope["method"])
        if route is not None:
            child["route"] = route
        return Match.FULL, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods: Methods | None = scope["vmpooler.methods"]
        method: str = scope["method"]
        if methods is None:
            response: Response = error_response(404, ErrorCode.NO_SUCH_ROUTE, "no such route")
        elif (route := methods.get(method)) is None:
            response = error_response(405, ErrorCode.METHOD_NOT_ALLOWED, f"method {method} not allowed here",
                                      {"Allow": ", ".join(methods)})
        else:
            response = await route.endpoint(Request(scope, receive))
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # the routes are not named


def routes() -> list[BaseRoute]:
    return [PathTable()]
