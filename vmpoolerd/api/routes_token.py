"""`/token` routes. Without auth configured every one is 404, as in the original. With it, each needs
HTTP Basic credentials, and reading or revoking a token needs its owner's (the original let anyone
read any token and any user revoke any token, and answered 401 for an unknown one: contract A7.12)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import tokens
from vmpooler_core.errors import NotFound

from .access import require_user
from .endpoint import ok
from .services import Services


async def list_tokens(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    found = await tokens.of_user(services.inventory, user)
    if not found:
        raise NotFound(f"{user} has no tokens")
    return ok(found)


async def create_token(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    return ok({"token": await services.inventory.create_token(user)})


async def show_token(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    token = request.path_params["token"]
    return ok({token: await tokens.describe(services.config, services.inventory, token, user)})


async def revoke_token(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    await tokens.revoke(services.inventory, request.path_params["token"], user)
    return ok()
