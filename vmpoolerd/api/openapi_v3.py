"""The OpenAPI 3 document of API v3 (today's original), served at `/api/v3/openapi.json`.

Built from API v1's (openapi.py): the routes the two versions share keep v1's description; those where
v3 answers differently, and v3's own (`/poolstat`, `/totalrunning`, `/full_config`, the pool
configuration API), are described here. Every status code a route can answer is listed, so schemathesis
checks the live server against it (tests/api/test_schemathesis_v3.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .openapi import (
    _HOST,
    _TOKEN_HEADER,
    SNAPSHOT_EXAMPLE,
    Op,
    _error,
    _json,
    _op,
    _path,
    api_paths,
    openapi_document,
    server,
)
from .openapi_schemas import COUNT, INT, NUM, SCHEMAS, STR, STRINGS, TARGET, obj, ok_with, ref

_V3_VM_STATES = ["pending", "ready", "running", "completed", "discovered", "destroyed", "unknown"]
_STATUS_OK = obj(("ok",), False, ok={"type": "boolean", "enum": [True]})
_HISTORY = SCHEMAS["Vm"]["properties"]["history"]

V3_SCHEMAS: dict[str, Any] = {
    "AllocationV3": ok_with(obj(("hostname",), False, hostname={"oneOf": [STR, {**STRINGS, "minItems": 2}]})),
    "VmV3": obj(("template", "lifetime", "state", "ip"), False,
                template=STR, lifetime=INT, running=NUM,
                remaining={**NUM, "description": "Hours left of the lifetime (negative once past it)"},
                start_time={**STR, "description": "Checkout time, RFC 3339"},
                end_time={**STR, "description": "End of the lifetime, RFC 3339"},
                state={"type": "string", "enum": _V3_VM_STATES},
                tags=obj((), STR), snapshots=STRINGS, disk=STRINGS, ip=STR, fqdn=STR, host=STR, migrated=STR,
                history=_HISTORY),
    "VmDetailsV3": ok_with(ref("VmV3")),
    "StatusV3": obj(("status",), False,
                    boot=SCHEMAS["Status"]["properties"]["boot"], clone=SCHEMAS["Status"]["properties"]["clone"],
                    capacity=SCHEMAS["Status"]["properties"]["capacity"],
                    pools=obj((), obj(("ready", "running", "pending", "max", "lastBoot"), False, ready=INT,
                                      running=INT, pending=INT, max=INT, lastBoot=STR, alias=STRINGS, reason=STR,
                                      target=TARGET)),
                    providers=ref("Providers"),
                    queue=obj(("requested", "pending", "cloning", "booting", "ready", "running", "completed",
                               "total"), False, requested=INT, pending=INT, cloning=INT, booting=INT, ready=INT,
                              running=INT, completed=INT, total=INT),
                    status=SCHEMAS["Status"]["properties"]["status"]),
    "PoolStat": obj(("pools",), False, pools=obj((), obj(("max", "ready"), False, max=INT, alias=STRINGS,
                                                          ready=INT))),
    "TotalRunning": obj(("running",), False, running=INT),
    "PoolConfiguration": obj(("pool_configuration", "status"), False, status=_STATUS_OK, pool_configuration={
        "type": "array", "items": obj(("name", "template", "size", "template_ready"), True, name=STR, template=STR,
                                      size=INT, template_ready={"type": "boolean"}, alias=STRINGS)}),
    "FullConfig": obj(("full_config", "status"), False, status=_STATUS_OK, full_config={
        "type": "object", "description": "Every section the daemon runs with; passwords are `***`"}),
    "PoolSizes": {"type": "object", "additionalProperties": COUNT, "description": "Pool name -> size"},
    "PoolTemplates": {"type": "object", "additionalProperties": STR,
                      "description": "Pool name -> template, `folder/name`"},
    "PoolCloneTargets": {"type": "object", "additionalProperties": STR, "description": "Pool name -> cluster"},
    "PoolReset": {"type": "object", "description": "Pool name -> anything: each pool named is reset"},
    "OnDemandRequest": {"type": "object", "additionalProperties": COUNT,
                        "description": "Pool or alias -> count, and an optional `request_id` of your choice"},
    "OnDemandAccepted": ok_with(False, request_id=STR),
    "OnDemandStatus": ok_with({"oneOf": [STR, {"type": "boolean"}, obj(
        (), False, ready=STR, pending=STR, hostname={"oneOf": [STR, STRINGS]})]},
        request_id=STR, ready={"type": "boolean"}, message=STR),
    "SizeReset": ok_with(False, pool_size_before_reset=INT, pool_size_before_overrides=INT),
    "TemplateReset": ok_with(False, template_before_reset=STR, template_before_overrides=STR),
}

_OFF = {"description": "The pool configuration API is off (`config: experimental_features`); `code`: "
                       "`not_configured`",
        "content": {"application/json": {"schema": ref("Error")}},
        "headers": {"Allow": {"schema": {"type": "string"}, "description": "Empty: no method is allowed"}}}
_REFUSED = ("400", _json(ref("Error"), "Unknown pools or bad values, nothing changed: the pools are listed "
                                       "under `not_configured` (sizes), `bad_templates` (templates, clone "
                                       "targets) or `bad_pools` (resets)"))
_POOL = _path("pool", "Pool name", "pool1")


def _v3_op(op_id: str, summary: str, ok: tuple[str, str, str], errors: str, **kwargs: Any) -> Op:
    return _op(op_id + "V3", summary, ok, errors, **kwargs)


def _change(op_id: str, summary: str, body: str, example: Any, ok: str = "Ok", created_only: bool = False,
            params: list[Any] | None = None) -> Op:
    """A pool configuration change: 201 when something changed, 200 when nothing did."""
    op = _v3_op(op_id, summary, ("201", ok, "Changed" if not created_only else "Accepted"), "401 503",
                body=body or None, example=example, params=params)
    if not created_only:
        op["responses"]["200"] = _json(ref(ok), "Nothing to change")
    op["responses"]["405"] = _OFF
    if body:
        op["responses"]["400"] = _REFUSED[1]
    else:
        op["responses"]["404"] = _error("404")
    return op


def v3_paths(pool: str) -> dict[str, dict[str, Op]]:
    """Paths relative to `/api/v3`."""
    shared = api_paths(pool)
    paths: dict[str, dict[str, Op]] = {}
    for path in ("/summary", "/summary/{route}", "/summary/{route}/{key}", "/token", "/token/{token}"):
        paths[path] = {m: {**op, "operationId": op["operationId"] + "V3"} for m, op in shared[path].items()}
    vm_token = [_HOST, _TOKEN_HEADER]
    host_400 = "400 401 404 503"
    paths["/vm"] = {
        "get": {**shared["/vm"]["get"], "operationId": "listPoolsV3"},
        "post": _v3_op("checkout", "Check out VMs, all or nothing: FQDNs keyed by the name asked for",
                       ("200", "AllocationV3", "Checked out"), "401 403 404 503", params=[_TOKEN_HEADER],
                       body="CheckoutRequest", example={pool: "1"}),
    }
    paths["/vm/{hostname}"] = {
        "get": _v3_op("getVm", "One VM's details", ("200", "VmDetailsV3", "VM"), "400 404 503", params=[_HOST]),
        "put": _v3_op("modifyVm", "Change a VM's lifetime (hours since checkout) or tags; an empty body "
                      "changes nothing", ("200", "Ok", "Changed"), host_400, params=vm_token, body="Modification",
                      example={"lifetime": 4, "tags": {"tested_by": "rspec"}}),
        "delete": _v3_op("returnVm", "Return a checked-out VM (it is then destroyed)", ("200", "Ok", "Returned"),
                         host_400, params=vm_token),
        "post": _v3_op("checkoutPath", "Check out VMs named in the path, `pool1+pool1+pool2`",
                       ("200", "AllocationV3", "Checked out"), "400 401 403 404 503",
                       params=[_path("hostname", "Pool or alias names joined by '+'", f"{pool}+{pool}"),
                               _TOKEN_HEADER]),
    }
    paths["/vm/{hostname}"]["put"]["requestBody"]["required"] = False
    paths["/vm/{hostname}/disk/{size}"] = {"post": _v3_op(
        "addDisk", "Queue an extra disk of `size` GB", ("202", "DiskQueued", "Queued"), host_400,
        params=[*vm_token, _path("size", "Disk size in GB (1 to 2048)", "8")])}
    paths["/vm/{hostname}/snapshot"] = {"post": _v3_op(
        "takeSnapshot", "Queue a snapshot", ("202", "SnapshotQueued", "Queued"), host_400, params=vm_token)}
    paths["/vm/{hostname}/snapshot/{snapshot}"] = {"post": _v3_op(
        "revertSnapshot", "Queue a revert to a snapshot the VM has", ("202", "Ok", "Queued"), host_400,
        params=[*vm_token, _path("snapshot", "Snapshot name", SNAPSHOT_EXAMPLE)])}
    view = {"name": "view", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "Sections wanted beside `status`, comma-separated (boot, capacity, clone, pools, queue)"}
    names = {"name": "pool", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "Pool or alias names, comma-separated"}
    paths["/status"] = {"get": _v3_op("getStatus", "Pool capacity, queue, today's clone and boot times",
                                      ("200", "StatusV3", "Status document"), "503", params=[view])}
    paths["/poolstat"] = {"get": _v3_op("getPoolstat", "Ready VMs and size of some pools",
                                        ("200", "PoolStat", "The pools named"), "503", params=[names])}
    paths["/totalrunning"] = {"get": _v3_op("getTotalRunning", "VMs checked out, over every pool",
                                            ("200", "TotalRunning", "Count"), "503")}
    paths["/full_config"] = {"get": _v3_op("getFullConfig", "The configuration (passwords masked); with "
                                           "authentication configured, for token holders",
                                           ("200", "FullConfig", "Configuration"), "401 503",
                                           params=[_TOKEN_HEADER])}
    paths["/config"] = {"get": _v3_op("getConfig", "Each pool's settings as the manager runs them",
                                      ("200", "PoolConfiguration", "Pools"), "404 503")}
    paths["/config/poolsize"] = {"post": _change("setPoolSize", "Change pool sizes", "PoolSizes", {pool: "2"},
                                                 params=[_TOKEN_HEADER])}
    paths["/config/poolsize/{pool}"] = {"delete": _change(
        "resetPoolSize", "Back to the configured size", "", None, ok="SizeReset", params=[_POOL, _TOKEN_HEADER])}
    paths["/config/pooltemplate"] = {"post": _change(
        "setPoolTemplate", "Change pool templates (the pools' ready and pending VMs are replaced)",
        "PoolTemplates", {pool: "templates/new"}, params=[_TOKEN_HEADER])}
    paths["/config/pooltemplate/{pool}"] = {"delete": _change(
        "resetPoolTemplate", "Back to the configured template", "", None, ok="TemplateReset",
        params=[_POOL, _TOKEN_HEADER])}
    paths["/config/clonetarget"] = {"post": _change(
        "setCloneTarget", "Change pool clone targets (the pools' ready and pending VMs are replaced)",
        "PoolCloneTargets", {pool: "cluster1"}, params=[_TOKEN_HEADER])}
    paths["/poolreset"] = {"post": _change(
        "resetPools", "Replace the ready and pending VMs of pools", "PoolReset", {pool: "1"}, created_only=True,
        params=[_TOKEN_HEADER])}
    request_id = _path("request_id", "The request's id", "abcdefghijkl0123")
    paths["/ondemandvm"] = {"post": _v3_op(
        "submitOnDemand", "Ask for VMs to be cloned for you (poll GET /ondemandvm/<id> until ready)",
        ("201", "OnDemandAccepted", "Accepted"), "400 401 403 404 409 503", params=[_TOKEN_HEADER],
        body="OnDemandRequest", example={pool: "2"})}
    paths["/ondemandvm/{request_id}"] = {
        "post": _v3_op("submitOnDemandPath", "The same, the pools or aliases in the path (`a+a+b`)",
                       ("201", "OnDemandAccepted", "Accepted"), "400 401 403 404 409 503",
                       params=[_path("request_id", "Pool or alias names joined by '+'", f"{pool}+{pool}"),
                               _TOKEN_HEADER]),
        "get": _v3_op("getOnDemand", "A request's progress: 202 while being filled (per alias: ready and "
                      "pending), 200 once ready (per alias: hostnames), failed or deleted (a message)",
                      ("200", "OnDemandStatus", "Ready, failed or deleted"), "404 503", params=[request_id]),
        "delete": _v3_op("deleteOnDemand", "Delete a request; the VMs delivered so far are returned",
                         ("200", "Ok", "Deleted"), "401 404 503", params=[request_id, _TOKEN_HEADER]),
    }
    paths["/ondemandvm/{request_id}"]["get"]["responses"]["202"] = _json(ref("OnDemandStatus"), "Being filled")
    paths["/openapi.json"] = {"get": {"operationId": "getOpenapiV3", "summary": "This document", "responses": {
        "200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {
            "type": "object"}}}}}}}
    return paths


@cache
def document(pool: str = "centos-6-x86_64") -> dict[str, Any]:
    return openapi_document(
        "vmpooler API v3", "API v3 of vmpooler, as today's original serves it: host names are FQDNs, checkouts "
        "are keyed by the name asked for. Error bodies are `{\"ok\": false, \"code\": ..., \"reason\": ...}`: "
        "branch on `code`, show `reason` to people.",
        {"/api/v3" + p: ops for p, ops in v3_paths(pool).items()}, {**SCHEMAS, **V3_SCHEMAS})


serve = server(document)
