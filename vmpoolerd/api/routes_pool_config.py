"""API v3's pool configuration routes (contract B2.10): `GET /config`, and behind `experimental_features`
the changes of a pool's size, template and clone target, their resets, and `POST /poolreset`.

As in the original: 405 while `experimental_features` is off, then (with auth configured) 401 without a
valid token, then the body; 201 when something changed, 200 when nothing did; a bad request lists the
pools it refused under the original's key (`not_configured`, `bad_templates`, `bad_pools`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import tokens
from vmpooler_core.audit import Caller
from vmpooler_core.errors import ErrorCode, InvalidRequest, NotConfigured, NotFound
from vmpooler_core.metrics import Event
from vmpooler_core.pool_settings import BadPools, PoolSettings

from .endpoint import document, ok
from .errors import error_response
from .guard import caller
from .inputs import auth_token, json_body
from .services import Services

OFF = "the pool configuration API is off: set `experimental_features: true` under `config:`"


async def get_config(request: Request, services: Services) -> Response:
    if not services.config.pools:
        raise NotConfigured("no pools are configured")
    pools = await PoolSettings(services.config, services.inventory).documents()
    return document({"pool_configuration": pools, "status": {"ok": True}})


async def _allowed(request: Request, services: Services) -> Caller | Response:
    """The caller, or the answer when the API is off (405); Unauthorized without a valid token (auth)."""
    if not services.config.app.experimental_features:
        # An empty Allow: no method is allowed on this path while the feature is off.
        return error_response(405, ErrorCode.NOT_CONFIGURED, OFF, {"Allow": ""})
    who = caller(request)
    if services.access.enabled:
        who = who.as_user(await tokens.use(services.inventory, auth_token(request)))
    return who


Change = Callable[[PoolSettings, Any, Caller], Awaitable[bool]]


async def _change(request: Request, services: Services, change: Change,
                  counted: Event = Event.CONFIG_INVALID) -> Response:
    who = await _allowed(request, services)
    if isinstance(who, Response):
        return who
    body = await json_body(request)
    try:
        changed = await change(PoolSettings(services.config, services.inventory), body, who)
    except BadPools as err:
        for name in err.names:
            services.metrics.event(counted, name)
        return error_response(400, err.code, str(err), None, **{err.field: err.names})
    except InvalidRequest:
        services.metrics.event(counted)  # a body that names no pools: the original's `.unknown`
        raise
    return ok(status=201 if changed else 200)


async def set_sizes(request: Request, services: Services) -> Response:
    return await _change(request, services, PoolSettings.set_sizes)


async def set_templates(request: Request, services: Services) -> Response:
    return await _change(request, services, PoolSettings.set_templates)


async def set_clone_targets(request: Request, services: Services) -> Response:
    return await _change(request, services, PoolSettings.set_clone_targets)


async def reset_pools(request: Request, services: Services) -> Response:
    async def reset(settings: PoolSettings, body: Any, who: Caller) -> bool:
        await settings.reset_pools(body, who)
        return True  # a reset is always a change: the manager replaces the pools' VMs

    return await _change(request, services, reset, Event.POOLRESET_INVALID)


Reset = Callable[[PoolSettings, str, Caller], Awaitable[tuple[bool, dict[str, Any]]]]


async def _reset(request: Request, services: Services, reset: Reset) -> Response:
    who = await _allowed(request, services)
    if isinstance(who, Response):
        return who
    try:
        changed, fields = await reset(PoolSettings(services.config, services.inventory), request.path_params["pool"],
                                      who)
    except NotFound:
        services.metrics.event(Event.CONFIG_INVALID)  # as the original: `config.invalid.unknown`
        raise
    return ok(fields, status=201 if changed else 200)


async def reset_size(request: Request, services: Services) -> Response:
    return await _reset(request, services, PoolSettings.reset_size)


async def reset_template(request: Request, services: Services) -> Response:
    return await _reset(request, services, PoolSettings.reset_template)
