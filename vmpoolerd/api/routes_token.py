"""`/token` routes. Without auth configured every one is 404, as in the original. With it, listing,
creating and revoking need HTTP Basic credentials, and revoking a token needs its owner's (the original
let any user revoke any token, and answered 401 for an unknown one: contract A7.12). Reading one token
needs only the token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .credentials import require_user
from .endpoint import ok
from .guard import caller
from .services import Services


async def list_tokens(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    return ok(await services.access.tokens_of(user))


async def create_token(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    return ok({"token": await services.access.create_token(user, caller(request))})


async def show_token(request: Request, services: Services) -> Response:
    """No credentials, as in the original (contract A2.2, B2.2): the token in the path is the secret, and
    the original's clients (vmfloaty, the Go library, the old Python CLI) send none for this route."""
    token = request.path_params["token"]
    return ok({token: await services.access.token(token)})


async def revoke_token(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    await services.access.revoke(request.path_params["token"], user, caller(request))
    return ok()
