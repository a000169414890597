"""`/status` and `/summary`: service-wide figures, each read from Redis in one round trip."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import status, summary

from .endpoint import document
from .services import Services


async def get_status(request: Request, services: Services) -> Response:
    return document(await status.status(services.config, services.inventory))


async def get_summary(request: Request, services: Services) -> Response:
    """Whole summary, or `/summary/<route>[/<key>]` for one section (boot, clone, tag)."""
    first, last = summary.date_range(request.query_params.get("from"), request.query_params.get("to"))
    params = request.path_params
    return document(await summary.summary(services.inventory, first, last, params.get("route"),
                                          params.get("key")))
