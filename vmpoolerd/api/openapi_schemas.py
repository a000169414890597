"""JSON Schemas of every body the API sends or accepts, for the OpenAPI document (openapi.py).

Kept exact enough for schemathesis to check each live response against them.
"""

from __future__ import annotations

from typing import Any

from vmpooler_core.demand import LIMITS
from vmpooler_core.errors import ErrorCode
from vmpooler_core.provider_health import SUMMARY

Schema = dict[str, Any]

INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
STR: Schema = {"type": "string"}
STRINGS: Schema = {"type": "array", "items": STR}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), extra: Schema | bool | None = None, **props: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


def ok_with(extra: Schema | bool | None = False, **props: Schema) -> Schema:
    """`{"ok": true, ...}` bodies."""
    return obj(("ok",), extra, ok={"type": "boolean", "enum": [True]}, **props)


COUNT: Schema = {"oneOf": [{"type": "integer", "minimum": 0},
                           {"type": "string", "pattern": r"^\s*[0-9]+\s*$"}]}
DURATIONS: Schema = obj(("average", "min", "max", "total"), False, average=NUM, min=NUM, max=NUM, total=NUM)
# A pool sized to demand: its target (vmpooler_core/demand.py, Target.document).
TARGET: Schema = {**obj(("size", "why", "limit", "floor", "max_size", "demand_per_minute", "peak", "usual",
                         "refill_seconds", "at"), False, size=INT, why=STR,
                        limit={"type": "string", "enum": list(LIMITS)}, floor=INT, max_size=INT,
                        demand_per_minute=NUM, peak=INT, usual=INT, refill_seconds=NUM, at=STR),
                  "description": "The size the manager keeps a pool sized to demand at now, and why"}
TASK_DAY: Schema = obj(("duration", "count"), False,
                       duration=obj(("average", "min", "max", "total"), False, average=NUM, min=NUM, max=NUM,
                                    total=NUM),
                       count=obj(("total",), False, total=INT))
TASK_RANGE: Schema = obj((), False,
                         duration=obj((), False, average=NUM, min=NUM, max=NUM, total=NUM,
                                      pool=obj((), DURATIONS)),
                         count=obj((), False, total=INT, pool=obj((), obj(("total",), False, total=INT))))
TAGS: Schema = obj((), obj((), INT))

ERROR_CODE: Schema = {"type": "string", "enum": [code.value for code in ErrorCode],
                      "description": "What went wrong, for programs: " + "; ".join(
                          f"`{code.value}`" for code in ErrorCode) + ". Branch on this, not on the reason."}
NOT_OK: Schema = {"type": "boolean", "enum": [False]}
_PROBLEM_KIND: Schema = {"type": "string", "enum": list(SUMMARY),
                         "description": "; ".join(f"`{kind}`: {text}" for kind, text in SUMMARY.items())}
_PROBLEM: Schema = obj(("problem", "reason", "since"), False, problem=_PROBLEM_KIND, reason=STR,
                       since={**STR, "description": "When it began, UTC, YYYY-MM-DDTHH:MM:SSZ"})
PROVIDERS: Schema = {
    "type": "object", "description": "Each provider's health as the managers report it; present once one has",
    "additionalProperties": obj(
        ("ok", "state"), False, ok={"type": "boolean"},
        state={"type": "string", "enum": ["ok", "degraded", "unknown"],
               "description": "`unknown`: no manager has reported on it within its lease length"},
        problem=_PROBLEM_KIND, reason=STR, since=_PROBLEM["properties"]["since"],
        pools={"type": "object", "additionalProperties": _PROBLEM,
               "description": "The provider's pools with a problem of their own"})}

DIRECTORY: Schema = obj(
    ("ok", "state", "hosts"), False, ok={"type": "boolean"},
    state={"type": "string", "enum": ["ok", "degraded", "unavailable"],
           "description": "`degraded`: some hosts failed the last login that asked them; `unavailable`: all"},
    hosts={"type": "object", "description": "Each LDAP host as the logins of the last 5 minutes saw it",
           "additionalProperties": obj(("ok", "seen"), False, ok={"type": "boolean"}, seen=STR, reason=STR,
                                       since=_PROBLEM["properties"]["since"])})

_SERIES: Schema = {"type": "array", "items": {"oneOf": [INT, {"type": "null"}]}}
_TIMES: Schema = {"oneOf": [obj(("median", "slowest", "count", "since"), False, median=NUM, slowest=NUM, count=INT,
                                since=INT), {"type": "null"}]}
# The dashboard's history (dashboard_stats.py): each series one value (or null) per bucket of `step` seconds.
HISTORY: Schema = obj(
    ("hours", "start", "step", "now", "pools", "running"), False, hours=INT, start=INT, step=INT, now=INT,
    pools=obj((), obj(("ready", "pending", "running", "size", "checkouts", "refused", "clone", "boot"), False,
                      ready=_SERIES, pending=_SERIES, running=_SERIES, size=_SERIES, checkouts=_SERIES,
                      refused=_SERIES, target=_SERIES, clone=_TIMES, boot=_TIMES)),
    running=obj((), _SERIES))

SCHEMAS: dict[str, Schema] = {
    "Error": obj(("ok", "code", "reason"), True, ok=NOT_OK, code=ERROR_CODE, reason=STR, request_id=STR),
    "RateLimited": obj(("ok", "code", "reason", "limit", "period", "retry_after"), False,
                       ok=NOT_OK, code={"type": "string", "enum": [ErrorCode.RATE_LIMITED.value]}, reason=STR,
                       limit=INT, period=INT, retry_after={"type": "integer", "minimum": 1}),
    "TooManyVms": obj(("ok", "code", "reason", "held", "limit"), False, ok=NOT_OK,
                      code={"type": "string", "enum": [ErrorCode.TOO_MANY_VMS.value]}, reason=STR, held=INT,
                      limit=INT),
    "Ok": ok_with(),
    "PoolNames": STRINGS,
    "CheckoutRequest": {"type": "object", "additionalProperties": COUNT,
                        "description": "Pool or alias name -> number of VMs (an integer or a digit string)."},
    "Allocation": ok_with(obj(("hostname",), False, hostname={"oneOf": [STR, {**STRINGS, "minItems": 2}]}),
                          domain=STR),
    "Vm": obj(("template", "lifetime", "state", "ip"), False,
              template=STR, lifetime=INT, running=NUM,
              state={"type": "string", "enum": ["pending", "ready", "running", "completed", "discovered",
                                                "destroyed", "unknown"]},
              tags=obj((), STR), snapshots=STRINGS, disk=STRINGS, ip=STR, domain=STR,
              history={"type": "array", "description": "What happened to the VM, oldest first (at most 50 "
                       "entries): when (`at`), what (`event`) and who (`user`, `client` and `request` for a "
                       "client's request, `manager` for the manager's work), with a `detail` for some.",
                       "items": obj(("at", "event"), STR, at=STR, event=STR, user=STR, client=STR, request=STR,
                                    manager=STR, detail=STR)}),
    "VmDetails": ok_with(ref("Vm")),
    "Modification": obj((), False,
                        lifetime={"oneOf": [{"type": "integer", "minimum": 1},
                                            {"type": "string", "pattern": r"^\s*[0-9]+\s*$"}]},
                        tags={"type": "object", "additionalProperties": {
                            "oneOf": [STR, NUM, {"type": "boolean"}, {"type": "null"}]}}),
    "DiskQueued": ok_with(obj(("disk",), False, disk=STR)),
    "SnapshotQueued": ok_with(obj(("snapshot",), False, snapshot=STR)),
    "Status": obj(("boot", "capacity", "clone", "pools", "queue", "status"), False,
                  boot=TASK_DAY, clone=TASK_DAY,
                  capacity=obj(("current", "total", "percent"), False, current=INT, total=INT, percent=NUM),
                  pools=obj((), obj(("ready", "running", "pending", "max"), False, ready=INT, running=INT,
                                    pending=INT, max=INT, alias=STRINGS, target=TARGET,
                                    reason={**STR, "description": "Why the pool is short of ready VMs, when "
                                                                  "its provider is degraded"})),
                  providers=ref("Providers"), directory=ref("Directory"),
                  queue=obj(("pending", "cloning", "booting", "ready", "running", "completed", "total"), False,
                            pending=INT, cloning=INT, booting=INT, ready=INT, running=INT, completed=INT,
                            total=INT),
                  status=obj(("ok", "message", "uptime"), False, ok={"type": "boolean"}, message=STR,
                             empty=STRINGS, uptime=NUM)),
    "Summary": obj(("daily",), False, boot=TASK_RANGE, clone=TASK_RANGE, tag=TAGS,
                   daily={"type": "array", "items": obj(("date",), False, date=STR, boot=TASK_RANGE,
                                                        clone=TASK_RANGE, tag=TAGS)}),
    "TokenList": ok_with(obj(("created", "last"), False, created=STR, last=STR)),
    "TokenCreated": ok_with(False, token={"type": "string", "pattern": "^[a-z0-9]{32}$"}),
    "TokenDetails": ok_with(obj(("vms",), STR, vms=obj(("running",), False, running=STRINGS))),
    "PoolStats": obj((), obj(("size", "ready"), False, size=INT, ready=INT, history={"type": "array",
                                                                                       "items": INT})),
    "Providers": PROVIDERS,
    "Directory": DIRECTORY,
    "RunningStats": obj((), obj(("running",), False, running=INT, history={"type": "array", "items": INT})),
    "History": HISTORY,
}
