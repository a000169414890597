"""The dashboard: `GET /` redirects to it; `/dashboard/` is a live page (plain JS in
vmpoolerd/static, served from the package: no CDN) that polls `/api/v1/status`; and the era-A JSON
stats routes its graphs polled.

Without a graphite server the original's `history` for a pool is just the current ready count, and
the running stats have none; that is what is served here (no graphite queries from the API).
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from vmpooler_core import pool_settings
from vmpooler_core.errors import ErrorCode

from .endpoint import document
from .errors import error_response
from .services import Services

_MAJOR_RE = re.compile(r"^(\w+)-")


def major(pool: str) -> str:
    """The pool's family, the part before the first '-' (`centos-6-x86_64` -> `centos`)."""
    match = _MAJOR_RE.match(pool)
    return match.group(1) if match else pool


async def root(request: Request, services: Services) -> Response:
    return RedirectResponse("/dashboard/", status_code=302)


@cache
def _asset(name: str) -> bytes:
    return resources.files("vmpoolerd").joinpath("static", name).read_bytes()


_TYPES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}


async def page(request: Request, services: Services) -> Response:
    site_name = services.config.app.site_name
    # site_name is the admin's own HTML (the original's default is "<b>vmpooler</b>"), shown as such.
    title = html.escape(re.sub(r"<[^>]*>", "", site_name))
    text = _asset("dashboard.html").decode().replace("{{title}}", title).replace("{{site_name}}", site_name)
    return HTMLResponse(text)


async def asset(request: Request, services: Services) -> Response:
    name = request.path_params["name"]
    if name not in _TYPES:
        return error_response(404, ErrorCode.NOT_FOUND, f"no dashboard file {name[:100]!r}")
    return Response(_asset(name), media_type=_TYPES[name], headers={"Cache-Control": "max-age=300"})


async def pool_stats(request: Request, services: Services) -> Response:
    names = [pool.name for pool in services.config.pools]
    counts = await services.inventory.counts(names)
    sizes = await pool_settings.sizes(services.inventory, services.config.pools)  # the API's, if set
    history = "history" in request.query_params
    result: dict[str, Any] = {}
    for pool in services.config.pools:
        ready = counts[pool.name]["ready"]
        result[pool.name] = {"size": sizes[pool.name], "ready": ready}
        if history:
            result[pool.name]["history"] = [ready]
    return document(result)


async def running_stats(request: Request, services: Services) -> Response:
    counts = await services.inventory.counts([pool.name for pool in services.config.pools])
    result: dict[str, dict[str, int]] = {}
    for pool, states in counts.items():
        family = result.setdefault(major(pool), {"running": 0})
        family["running"] += states["running"]
    return document(result)
