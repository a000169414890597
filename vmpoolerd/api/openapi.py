"""The OpenAPI 3 document of the API, served at `/api/v1/openapi.json`.

Every route is listed under `/api/v1`, and again without the prefix (the original's unversioned
aliases), with its parameters, request body and every status code it can answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import vmpooler_core

from .errors import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL
from .openapi_schemas import SCHEMAS, ref
from .services import Services

Op = dict[str, Any]

_ERRORS = {
    "400": "Malformed request: bad JSON, a body that is not an object, bad counts or dates "
           "(`code`: `invalid_request`; `bad_http` for a request that is not HTTP/1.1)",
    "401": "Missing or wrong credentials or token, with `WWW-Authenticate` (`code`: `unauthorized`)",
    "403": "The token already holds VMs up to `max_vms_per_token` (`held` and `limit` say how many); "
           "nothing was taken (`code`: `too_many_vms`)",
    "404": "`code` says which: `unknown_pool` (a checkout names a pool or alias this server does not have; "
           "nothing was taken), `not_found` (no such VM, token, snapshot or summary), `not_checked_out` "
           "(returning a VM nobody holds), `not_configured` (authentication is off here), `no_such_route`",
    "405": "The path exists, the method does not (`code`: `method_not_allowed`; `Allow` lists the methods)",
    "409": "Conflict (`code`: `conflict`)",
    "413": "Request body over 1 MiB (`code`: `body_too_large`)",
    "414": f"Request URL (path and query) over {MAX_URL} bytes (`code`: `url_too_long`)",
    "429": "Over the client's rate limit (when `rate_limits` are enabled: per token, else per address), or, "
           "for credentials, too many failed logins for the user name or from the address; nothing was done "
           "(`code`: `rate_limited`; `Retry-After` says when to try again)",
    "431": f"More than {MAX_HEADERS} request headers, or over {MAX_HEADER_BYTES} bytes of them "
           "(`code`: `headers_too_large`)",
    "503": "`code` says which: `no_capacity` (a pool has too few ready VMs; nothing was taken), "
           "`backend_unavailable` (Redis, or for credentials the directory, did not answer in time) or "
           "`directory_unavailable` (for credentials: no LDAP host could check them; the reason says why)",
}
_CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string"},
                                   "description": 'Basic realm="Authentication required"'}}
_INT_HEADER = {"schema": {"type": "integer"}}
_RATE_HEADERS = {
    "Retry-After": {**_INT_HEADER, "description": "Seconds until the client may send another request"},
    "X-RateLimit-Limit": {**_INT_HEADER, "description": "Requests allowed per period"},
    "X-RateLimit-Remaining": {**_INT_HEADER, "description": "Always 0 on a 429"},
    "X-RateLimit-Reset": {**_INT_HEADER, "description": "Epoch seconds when the whole allowance is back"},
}
# Every route of the table can answer these: the request head is checked before routing.
_HEAD_ERRORS = ("414", "431")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(code: str) -> dict[str, Any]:
    response = _json(ref({"403": "TooManyVms", "429": "RateLimited"}.get(code, "Error")), _ERRORS[code])
    if code == "401":
        response["headers"] = _CHALLENGE
    if code == "429":
        response["headers"] = _RATE_HEADERS
    return response


def _path(name: str, description: str, example: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "path", "required": True, "description": description,
             "schema": {"type": "string"}}
    if example is not None:
        param["example"] = example
    return param


_TOKEN_HEADER = {"name": "X-AUTH-TOKEN", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "An API token (from POST /token); needed when authentication is configured"}
# Examples in the original's style (its README's host name and spec token).
_HOST = _path("hostname", "VM host name, short or `<host>.<domain>`", "cuna2qeahwlzji7")
_TOKEN = _path("token", "Token", "abcdefghijklmnopqrstuvwxyz012345")
SNAPSHOT_EXAMPLE = "n1ehs2gf8oyxn5lpl8ql5c5f1m13bsb8"
_DATES = [{"name": n, "in": "query", "required": False, "description": f"{d} day, YYYY-MM-DD (default: today)",
           "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}}
          for n, d in (("from", "First"), ("to", "Last"))]
_BASIC: list[dict[str, list[str]]] = [{"basicAuth": []}]


def _op(op_id: str, summary: str, ok: tuple[str, str, str], errors: str, *, params: list[Any] | None = None,
        body: str | None = None, example: Any = None, security: list[Any] | None = None) -> Op:
    """`ok` = (status, schema name, description); `errors` = space-separated error status codes. Every
    operation built here is rate limited (limits.py), so each can answer 429."""
    status, schema, description = ok
    responses: dict[str, Any] = {status: _json(ref(schema), description)}
    codes = [*errors.split(), "429"]
    if body:
        codes += ["400", "413"]
    responses.update({code: _error(code) for code in sorted(set(codes))})
    op: Op = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        media: dict[str, Any] = {"schema": ref(body)}
        if example is not None:
            media["example"] = example
        op["requestBody"] = {"required": True, "content": {"application/json": media}}
    if security is not None:
        op["security"] = security
    return op


def api_paths(pool: str) -> dict[str, dict[str, Op]]:
    """Paths relative to `/api/v1`; `pool` (a configured pool) is used in examples."""
    vm_token = [_HOST, _TOKEN_HEADER]
    return {
        "/status": {"get": _op("getStatus", "Pool capacity, queue and today's clone and boot times",
                               ("200", "Status", "Status document"), "503")},
        "/summary": {"get": _op("getSummary", "Clone, boot and tag statistics over a range of days",
                                ("200", "Summary", "Summary"), "400 503", params=_DATES)},
        "/summary/{route}": {"get": _op(
            "getSummarySection", "One section of the summary", ("200", "Summary", "Summary section"),
            "400 404 503", params=[_path("route", "boot, clone or tag", "boot"), *_DATES])},
        "/summary/{route}/{key}": {"get": _op(
            "getSummaryKey", "One key of a summary section", ("200", "Summary", "Summary section"),
            "400 404 503", params=[_path("route", "boot, clone or tag", "boot"),
                                   _path("key", "duration or count (boot, clone), or a tag name", "count"),
                                   *_DATES])},
        "/token": {
            "get": _op("listTokens", "The caller's tokens", ("200", "TokenList", "Tokens"), "401 404 503",
                       security=_BASIC),
            "post": _op("createToken", "Create a token for the caller", ("200", "TokenCreated", "New token"),
                        "401 404 503", security=_BASIC),
        },
        "/token/{token}": {
            "get": _op("getToken", "A token and its running VMs: no credentials, the token is the secret",
                       ("200", "TokenDetails", "Token"), "404 503", params=[_TOKEN]),
            "delete": _op("deleteToken", "Revoke one of the caller's tokens", ("200", "Ok", "Revoked"),
                          "401 404 503", params=[_TOKEN], security=_BASIC),
        },
        "/vm": {
            "get": _op("listPools", "Pool names", ("200", "PoolNames", "Pool names (no aliases)"), ""),
            "post": _op("checkout", "Check out VMs: all or nothing", ("200", "Allocation", "Checked out"),
                        "401 403 404 503", params=[_TOKEN_HEADER], body="CheckoutRequest", example={pool: "1"}),
        },
        "/vm/{hostname}": {
            "get": _op("getVm", "One VM's details", ("200", "VmDetails", "VM"), "404 503", params=[_HOST]),
            "put": _op("modifyVm", "Change a VM's lifetime (hours since checkout) or tags",
                       ("200", "Ok", "Changed"), "401 404 503", params=vm_token, body="Modification",
                       example={"lifetime": 4, "tags": {"tested_by": "rspec"}}),
            "delete": _op("returnVm", "Return a checked-out VM (it is then destroyed)",
                          ("200", "Ok", "Returned"), "401 404 503", params=vm_token),
            "post": _op("checkoutPath", "Check out VMs named in the path, `pool1+pool1+pool2`",
                        ("200", "Allocation", "Checked out"), "400 401 403 404 503",
                        params=[_path("hostname", "Pool or alias names joined by '+'", f"{pool}+{pool}"),
                                _TOKEN_HEADER]),
        },
        "/vm/{hostname}/disk/{size}": {"post": _op(
            "addDisk", "Queue an extra disk of `size` GB", ("202", "DiskQueued", "Queued"), "400 401 404 503",
            params=[*vm_token, _path("size", "Disk size in GB (1 to 2048)", "8")])},
        "/vm/{hostname}/snapshot": {"post": _op(
            "takeSnapshot", "Queue a snapshot", ("202", "SnapshotQueued", "Queued"), "401 404 503",
            params=vm_token)},
        "/vm/{hostname}/snapshot/{snapshot}": {"post": _op(
            "revertSnapshot", "Queue a revert to a snapshot the VM has", ("202", "Ok", "Queued"),
            "401 404 503", params=[*vm_token, _path("snapshot", "Snapshot name", SNAPSHOT_EXAMPLE)])},
    }


def _unversioned(paths: dict[str, dict[str, Op]]) -> dict[str, dict[str, Op]]:
    copies: dict[str, dict[str, Op]] = {}
    for path, ops in paths.items():
        copy = {method: {**op, "operationId": op["operationId"] + "Unversioned",
                         "summary": op["summary"] + " (unversioned alias)"} for method, op in ops.items()}
        if path == "/vm/{hostname}/disk/{size}":
            copy["put"] = {**copy["post"], "operationId": "addDiskUnversionedPut"}
        copies[path] = copy
    return copies


def _other_paths() -> dict[str, dict[str, Op]]:
    history = [{"name": "history", "in": "query", "required": False, "schema": {"type": "string"},
                "description": "Present: include history"}]
    return {
        "/api/v1/openapi.json": {"get": {"operationId": "getOpenapi", "summary": "This document", "responses": {
            "200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {
                "type": "object"}}}}}}},
        "/dashboard/stats/vmpooler/pool": {"get": _op(
            "getPoolStats", "Ready and size per pool", ("200", "PoolStats", "Per pool"), "503", params=history)},
        "/dashboard/stats/vmpooler/running": {"get": _op(
            "getRunningStats", "Running VMs per pool family (name before the first '-')",
            ("200", "RunningStats", "Per family"), "503", params=history)},
        "/dashboard/stats/vmpooler/history": {"get": _op(
            "getHistory", "Each pool's history (one-minute samples) and recent clone and boot times",
            ("200", "History", "Per pool and per family"), "400 503",
            params=[{"name": "hours", "in": "query", "required": False, "description": "The last 1 to 24 hours (6)",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 24}}])},
        "/": {"get": {"operationId": "getRoot", "summary": "Redirect to the dashboard",
                      "responses": {"302": {"description": "To /dashboard/"}}}},
        "/dashboard/": {"get": {"operationId": "getDashboard", "summary": "Dashboard page",
                                "responses": {"200": {"description": "HTML page",
                                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/dashboard/static/{name}": {"get": {
            "operationId": "getDashboardAsset", "summary": "The dashboard's script and style sheet",
            "parameters": [_path("name", "dashboard.js or dashboard.css", "dashboard.js")],
            "responses": {"200": {"description": "The file", "content": {
                "text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}},
                "404": _error_response("No such file")}}},
        "/healthcheck": {"get": {
            "operationId": "getHealthcheck",
            "summary": "Redis reachable, a manager's heartbeat fresh and no provider degraded",
            "responses": {"200": _health("Healthy"), "503": _health("Unhealthy: the reason says why")}}},
        "/metrics": {"get": {
            "operationId": "getMetrics", "summary": "Prometheus metrics (text exposition format)",
            "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "404": _error_response("Prometheus is not enabled in this process"),
                          "503": _error_response("Redis is unreachable")}}},
    }


def _health(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["ok", "redis", "managers", "heartbeat_age", "reason"],
        "properties": {"ok": {"type": "boolean"}, "redis": {"type": "boolean"}, "managers": {"type": "integer"},
                       "heartbeat_age": {"type": "number", "nullable": True}, "reason": {"type": "string"},
                       "code": {"type": "string", "enum": ["unhealthy", "backend_unavailable"],
                                "description": "Only when unhealthy"},
                       "providers": ref("Providers"), "directory": ref("Directory")}}}}}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def _with_head_errors(paths: dict[str, dict[str, Op]]) -> dict[str, dict[str, Op]]:
    for ops in paths.values():
        for op in ops.values():
            for code in _HEAD_ERRORS:
                op["responses"].setdefault(code, _error(code))
    return paths


def openapi_document(title: str, description: str, paths: dict[str, dict[str, Op]],
                     schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": vmpooler_core.__version__, "description": description},
        "paths": _with_head_errors(paths),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"},
                                "token": {"type": "apiKey", "in": "header", "name": "X-AUTH-TOKEN"}},
        },
    }


@cache
def document(pool: str = "centos-6-x86_64") -> dict[str, Any]:
    paths = api_paths(pool)
    return openapi_document(
        "vmpooler API", "API v1 of vmpooler: pools of ready VMs, checked out in milliseconds. Error bodies are "
        "`{\"ok\": false, \"code\": ..., \"reason\": ...}`: branch on `code` (see the `Error` schema for every "
        "code), show `reason` to people.",
        {**{"/api/v1" + p: ops for p, ops in paths.items()}, **_unversioned(paths), **_other_paths()}, SCHEMAS)


def server(build: Callable[[str], dict[str, Any]]) -> Callable[[Request, Services], Awaitable[Response]]:
    """The route serving a document built by `build(pool)`, its examples naming this server's first pool."""
    rendered = cache(lambda pool: json.dumps(build(pool)).encode())

    async def serve(request: Request, services: Services) -> Response:
        pools = services.config.pools
        return Response(rendered(pools[0].name if pools else "centos-6-x86_64"), media_type="application/json")

    return serve


serve = server(document)
