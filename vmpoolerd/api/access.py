"""Who may do what: Basic credentials for token routes, X-AUTH-TOKEN for VM changes.

Closes the original's holes (contract A7.4, A7.12): a bad token is refused before anything is taken,
and a token-owned VM is changed or returned only with its own token.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from vmpooler_core import tokens, vms
from vmpooler_core.errors import NotFound, Unauthorized

from .inputs import auth_token, basic_credentials
from .services import Services


def require_auth_configured(services: Services) -> None:
    if not services.config.auth_enabled:
        raise NotFound("authentication is not configured on this server")


async def require_user(request: Request, services: Services) -> str:
    """The Basic-auth user, checked by the configured provider (in a thread: LDAP blocks)."""
    require_auth_configured(services)
    credentials = basic_credentials(request)
    if credentials is None or services.authenticator is None:
        raise Unauthorized("HTTP Basic credentials are required")
    user, password = credentials
    if not await run_in_threadpool(services.authenticator.authenticate, user, password):
        raise Unauthorized("the user name or password is wrong")
    return user


async def require_token(request: Request, services: Services) -> str | None:
    """With auth configured, a valid X-AUTH-TOKEN (401 otherwise); without, whatever was sent."""
    token = auth_token(request)
    if services.config.auth_enabled:
        await tokens.use(services.inventory, token)
    return token


def require_owner(services: Services, vm: Mapping[str, str], token: str | None) -> None:
    if services.config.auth_enabled:
        vms.require_owner(vm, token)
