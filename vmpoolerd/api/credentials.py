"""HTTP Basic credentials of the token routes: read from the request, checked by the configured provider.

Who may do what once the user is known is the core's to say (vmpooler_core/access.py).
"""

from __future__ import annotations

from starlette.requests import Request

from vmpooler_core.errors import Unauthorized

from .guard import caller
from .inputs import basic_credentials
from .services import Services


async def require_user(request: Request, services: Services) -> str:
    """The Basic-auth user as the provider spells it, checked by it (throttled, in a thread, logged:
    login.py). Without auth configured there are no token routes: 404 before the credentials are looked at."""
    services.access.require_tokens()
    credentials = basic_credentials(request)
    if credentials is None or services.login is None:
        raise Unauthorized("HTTP Basic credentials are required")
    user, password = credentials
    return await services.login.user(caller(request), user, password, services.deadline)
