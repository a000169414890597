"""`/healthcheck` (Redis reachable, a manager's heartbeat fresh) and `/metrics` (Prometheus text)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import health

from .endpoint import Handler, document
from .services import Services


async def healthcheck(request: Request, services: Services) -> Response:
    verdict = await health.check(services.config, services.inventory)
    return document(verdict, status=200 if verdict["ok"] else 503)


async def metrics(request: Request, services: Services) -> Response:
    if services.prometheus is None:
        return document({"ok": False, "reason": "Prometheus metrics are not enabled in this process"}, 404)
    body = await services.prometheus.render(services.config, services.inventory)
    return Response(body, media_type=services.prometheus.content_type)


ROUTES: dict[str, dict[str, Handler]] = {
    "/healthcheck": {"GET": healthcheck},
    "/metrics": {"GET": metrics},
}
