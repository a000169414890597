"""`/healthcheck` (Redis reachable, a manager's heartbeat fresh, no provider degraded) and `/metrics`
(Prometheus text)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import health
from vmpooler_core.errors import ErrorCode

from .endpoint import document
from .errors import error_response
from .services import Services


async def healthcheck(request: Request, services: Services) -> Response:
    verdict = await health.check(services.config, services.inventory)
    if verdict["ok"]:
        return document(verdict)
    code = ErrorCode.UNHEALTHY if verdict["redis"] else ErrorCode.BACKEND_UNAVAILABLE
    return document({**verdict, "code": code.value}, status=503)


async def metrics(request: Request, services: Services) -> Response:
    if services.prometheus is None:
        return error_response(404, ErrorCode.NOT_CONFIGURED, "Prometheus metrics are not enabled in this process")
    body = await services.prometheus.render(services.config, services.inventory)
    return Response(body, media_type=services.prometheus.content_type)
