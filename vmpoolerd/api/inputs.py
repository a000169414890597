"""Reading what a client sent: JSON bodies, the X-AUTH-TOKEN header, Basic credentials, host names.

Everything malformed becomes an InvalidRequest (400) or NotFound (404) here, never a 500.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from typing import Any

from starlette.requests import Request

from vmpooler_core import vms
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest


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


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header; None when absent or unreadable."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None


def hostname(request: Request, config: Config) -> str:
    """The `hostname` path parameter: `<host>.<domain>` shortened to `<host>`, then checked (404)."""
    return vms.check_host(vms.shorten(request.path_params["hostname"], config.app.domain))
