"""The route table: every API path under `/api/v1`, and again unversioned (the original's
`API::Reroute`), the dashboard, and the OpenAPI document.

All of it is one Starlette route, `PathTable`: fixed paths are a dict lookup and the few paths with
parameters one regex each, after the `/api/v1` prefix is stripped once. Starlette's own Router tries
its routes one by one, each with a regex and a scope copy; at a fraction of a millisecond per
request that scan was a visible share of the CPU. The table answers every HTTP request itself: an
unknown path gets a JSON 404, and a known path with a wrong method one 405 listing every method of the
path (so the app needs no exception-handling middleware for routing's errors; app.py).

The unversioned disk route takes POST as the versioned one does (the original rerouted PUT there, to a
route that only existed for POST, so it could never succeed) and also PUT for its old clients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from . import dashboard, openapi, routes_health, routes_status, routes_token, routes_vm
from .endpoint import Endpoint, Handler, endpoint
from .errors import error_response
from .guard import STATUS, TEMPLATE
from .limits import rate_class

PREFIX = "/api/v1"
Methods = dict[str, Endpoint]
_PARAM = re.compile(r"\{(\w+)\}")


def api_paths() -> dict[str, dict[str, Handler]]:
    """Paths relative to the prefix -> method -> handler."""
    return {**routes_status.ROUTES, **routes_token.ROUTES, **routes_vm.ROUTES}


def versioned_paths() -> dict[str, dict[str, Handler]]:
    return {"/openapi.json": {"GET": openapi.serve}, **api_paths()}


def unversioned_paths() -> dict[str, dict[str, Handler]]:
    paths = api_paths()
    disk = "/vm/{hostname}/disk/{size}"
    paths[disk] = {**paths[disk], "PUT": paths[disk]["POST"]}
    return {**paths, **dashboard.ROUTES, **routes_health.ROUTES}


class Table:
    """Paths of one namespace (versioned or not): template -> method -> endpoint."""

    def __init__(self, paths: Mapping[str, Mapping[str, Handler]]) -> None:
        self.fixed: dict[str, tuple[Methods, str]] = {}
        self.patterns: list[tuple[re.Pattern[str], Methods, str]] = []
        for template, handlers in paths.items():
            methods = {method: endpoint(handler, rate_class(method, template)) for method, handler in handlers.items()}
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
            if "{" in template:
                regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
                self.patterns.append((re.compile(regex), methods, template))
            else:
                self.fixed[template] = (methods, template)

    def find(self, path: str) -> tuple[Methods, dict[str, str], str] | None:
        """Methods, path parameters and the path template (for metrics by route)."""
        fixed = self.fixed.get(path)
        if fixed is not None:
            return fixed[0], {}, fixed[1]
        for regex, methods, template in self.patterns:
            match = regex.fullmatch(path)
            if match:
                return methods, match.groupdict(), template
        return None


class PathTable(BaseRoute):
    def __init__(self) -> None:
        self.versioned = Table(versioned_paths())
        self.unversioned = Table(unversioned_paths())

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        if path.startswith(PREFIX + "/"):
            found = self.versioned.find(path[len(PREFIX):])
        else:
            found = self.unversioned.find(path)
        if found is None:
            return Match.FULL, {"path_params": {}, "vmpooler.methods": None}
        methods, params, template = found
        return Match.FULL, {"path_params": params, "vmpooler.methods": methods, TEMPLATE: template}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods: Methods | None = scope["vmpooler.methods"]
        method: str = scope["method"]
        if methods is None:
            response: Response = error_response(404, "no such route")
        elif (run := methods.get(method)) is None:
            response = error_response(405, f"method {method} not allowed here", {"Allow": ", ".join(methods)})
        else:
            response = await run(Request(scope, receive))
        scope[STATUS] = response.status_code
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # the routes are not named


def routes() -> list[BaseRoute]:
    return [PathTable()]
