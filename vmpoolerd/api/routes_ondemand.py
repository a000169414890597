"""`/api/v3/ondemandvm`: on-demand requests (vmpooler_core/provisioning.py), in the original's codes and
shapes (contract B2.9):

    POST   /ondemandvm            {"<pool or alias>": "<count>", ..., "request_id": "<optional>"}
    POST   /ondemandvm/<a+a+b>    the same, in the path          -> 201 {"ok": true, "request_id": ...}
    GET    /ondemandvm/<id>       202 while being filled, {"<alias>": {"ready": "1", "pending": "2"}};
                                  200 once ready, {"<alias>": {"hostname": ["<fqdn>", ...]}}; 200 failed
                                  or deleted, with a message
    DELETE /ondemandvm/<id>       200; the VMs delivered so far are returned

Error bodies carry the original's fields (`message`, `bad_templates`, `request_id`) beside ours (`code`,
`reason`), so clients of either read them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import ondemand
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest, UnknownPool, VmpoolerError
from vmpooler_core.metrics import Event, Metrics
from vmpooler_core.ondemand import DuplicateRequest, NoSuchRequest, TooManyInstances, Wanted
from vmpooler_core.ondemand_store import RequestState
from vmpooler_core.provisioning import Provisioning

from .endpoint import document, ok
from .errors import error_response
from .guard import caller
from .inputs import auth_token, json_body
from .services import Services

UNPARSABLE = "JSON payload could not be parsed"  # the original's message for a body it cannot read


class _Unparsable(InvalidRequest):
    """The body is not JSON: the original's 400 has its own message for that."""


def _refusal(err: VmpoolerError) -> Response | None:
    """The original's status and fields for the errors it answers in its own shape; None for the rest
    (401, 503, ...: answered as everywhere else)."""
    if isinstance(err, UnknownPool):
        return error_response(404, err.code, str(err), bad_templates=list(err.names))
    if isinstance(err, TooManyInstances):
        return error_response(403, err.code, str(err), message=str(err))
    if isinstance(err, DuplicateRequest):
        return error_response(409, err.code, str(err), request_id=err.request_id, message=str(err))
    if isinstance(err, NoSuchRequest):
        return error_response(404, err.code, str(err), message=str(err))
    if isinstance(err, InvalidRequest):
        return error_response(400, err.code, str(err), message=UNPARSABLE if isinstance(err, _Unparsable) else str(err))
    return None


def _count(metrics: Metrics, err: VmpoolerError) -> None:
    """The original's metric for a refused request (none for a body that is not JSON, as there)."""
    if isinstance(err, UnknownPool):
        for name in err.names:
            metrics.event(Event.ONDEMAND_INVALID, name)
    elif isinstance(err, TooManyInstances):
        metrics.event(Event.ONDEMAND_TOO_MANY, err.name)
    elif isinstance(err, DuplicateRequest):
        metrics.event(Event.ONDEMAND_DUPLICATE)
    elif isinstance(err, InvalidRequest) and not isinstance(err, _Unparsable):
        metrics.event(Event.ONDEMAND_INVALID)


async def _submit(request: Request, services: Services, parse: Callable[[], Awaitable[Wanted]]) -> Response:
    try:
        request_id = await Provisioning(services.config, services.inventory).submit(parse, auth_token(request),
                                                                                   caller(request))
    except VmpoolerError as err:
        _count(services.metrics, err)
        if (refused := _refusal(err)) is not None:
            return refused
        raise
    services.metrics.event(Event.ONDEMAND_ACCEPTED)
    return ok({"request_id": request_id}, status=201)


async def submit_body(request: Request, services: Services) -> Response:
    async def parse() -> Wanted:
        try:
            body = await json_body(request)
        except InvalidRequest as err:
            raise _Unparsable(str(err)) from None
        return ondemand.from_mapping(body)

    return await _submit(request, services, parse)


async def submit_path(request: Request, services: Services) -> Response:
    async def parse() -> Wanted:
        # The path parameter is named as GET's and DELETE's (one path template): here it holds `a+a+b`.
        return ondemand.from_spec(request.path_params["request_id"])

    return await _submit(request, services, parse)


def fqdn(config: Config, host: str) -> str:
    return f"{host}.{config.app.domain}" if config.app.domain else host


def status_document(state: RequestState, config: Config) -> tuple[int, dict[str, Any]]:
    """(status code, body) for a request, as the original answers GET /ondemandvm/<id>."""
    doc: dict[str, Any] = {"ok": True, "request_id": state.request_id, "ready": state.status == "ready"}
    if state.status == "ready":
        for part in state.parts:
            hosts = doc.setdefault(part.alias, {"hostname": []})["hostname"]
            hosts += [fqdn(config, host) for host in state.delivered[part.alias, part.pool]]
        return 200, doc
    if state.status == "deleted":
        return 200, {**doc, "message": ondemand.DELETED_MESSAGE}
    if state.status is not None:  # failed
        reason = state.failure_reason
        message = (f"The request failed: {reason}" if reason
                   else ondemand.TTL_MESSAGE.format(ttl=config.ondemand.request_ttl))
        return 200, {**doc, "message": message}
    counts: dict[str, list[int]] = {}
    for part in state.parts:
        ready = min(len(state.delivered[part.alias, part.pool]), part.count)
        ready_pending = counts.setdefault(part.alias, [0, 0])
        ready_pending[0] += ready
        ready_pending[1] += part.count - ready
    for alias, (ready, pending) in counts.items():
        doc[alias] = {"ready": str(ready), "pending": str(pending)}  # strings, as the original sends them
    return 202, doc


async def status(request: Request, services: Services) -> Response:
    try:
        state = await Provisioning(services.config, services.inventory).status(request.path_params["request_id"])
    except NoSuchRequest as err:
        return error_response(404, err.code, str(err), message=str(err))
    code, doc = status_document(state, services.config)
    return document(doc, code)


async def delete(request: Request, services: Services) -> Response:
    try:
        now = await Provisioning(services.config, services.inventory).delete(
            request.path_params["request_id"], auth_token(request), caller(request))
    except NoSuchRequest as err:
        return error_response(404, err.code, str(err), message=str(err))
    return ok() if now else ok({"message": "the request has already been deleted"})
