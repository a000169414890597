"""The dashboard: `GET /` redirects to it; `/dashboard/` is a live page (plain JS and SVG in
vmpoolerd/static, served from the package: no CDN, no build step) that polls `/api/v1/status` for the
counts and the providers' health, and `/dashboard/stats/vmpooler/history` for the pools' history; its JSON
routes are in dashboard_stats.py.
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from vmpooler_core.errors import ErrorCode

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
