"""Reading what a client sent: JSON bodies, the X-AUTH-TOKEN header, Basic credentials, host names.

Everything malformed becomes an InvalidRequest (400), Unauthorized (401: credentials) or NotFound (404)
here, never a 500.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from typing import Any

from starlette.requests import Request

from vmpooler_core import vms
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest, Unauthorized

# Far above any real user name or password, far below what would make a bind or a hash costly.
MAX_USER = 256
MAX_PASSWORD = 1024


async def json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
        raise InvalidRequest("the request body is not valid JSON") from None


def auth_token(request: Request) -> str | None:
    return request.headers.get("x-auth-token") or None


class BadCredentials(Unauthorized):
    """Credentials that cannot be read; `user`: the user name when it could be (for the log line)."""

    def __init__(self, reason: str, user: str | None = None) -> None:
        super().__init__(reason)
        self.user = user


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header; None when there is none. A header that
    is there but unreadable (another scheme, not base64, not UTF-8, no colon, an empty, overlong or
    unprintable user name, an overlong password) is BadCredentials (an Unauthorized), saying which."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise BadCredentials("the Authorization header must hold HTTP Basic credentials")
    try:
        # The header arrives as Latin-1: a byte over 127 is no base64 character (ascii refuses it).
        decoded = b64decode(encoded.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadCredentials("the Basic credentials are not valid base64") from None
    try:
        user, sep, password = decoded.decode("utf-8").partition(":")
    except UnicodeDecodeError:
        raise BadCredentials("the Basic credentials are not UTF-8") from None
    if not sep:
        raise BadCredentials("the Basic credentials have no ':' between the user name and the password")
    if not user or len(user) > MAX_USER or not user.isprintable():
        raise BadCredentials(f"the user name must be 1 to {MAX_USER} printable characters", user[:MAX_USER])
    if len(password) > MAX_PASSWORD:
        raise BadCredentials(f"the password is longer than {MAX_PASSWORD} characters", user)
    return user, password


def hostname(request: Request, config: Config) -> str:
    """The `hostname` path parameter: `<host>.<domain>` shortened to `<host>`, then checked (404)."""
    return vms.check_host(vms.shorten(request.path_params["hostname"], config.app.domain))
