"""HTTP Basic credentials of the token routes: read from the request, checked by the configured provider.

Who may do what once the user is known is the core's to say (vmpooler_core/access.py).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from vmpooler_core.errors import Unauthorized

from .inputs import basic_credentials
from .services import Services


async def require_user(request: Request, services: Services) -> str:
    """The Basic-auth user, checked by the configured provider (in a thread: LDAP blocks). Without auth
    configured there are no token routes: 404 before the credentials are looked at."""
    services.access.require_tokens()
    credentials = basic_credentials(request)
    if credentials is None or services.authenticator is None:
        raise Unauthorized("HTTP Basic credentials are required")
    user, password = credentials
    if not await run_in_threadpool(services.authenticator.authenticate, user, password):
        raise Unauthorized("the user name or password is wrong")
    return user
