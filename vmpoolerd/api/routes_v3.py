"""The routes where API v3 (today's original) answers differently from API v1; the others are v1's own
handlers (routing.py). The core is the same: the same checkout script, the same rules on tokens.

What differs, as in the original's v3:
- checkout answers under the name asked for (an alias stays the alias) with `<host>.<domain>` host names,
  each VM with its own pool's domain, and no `domain` key; an empty request (`{}` or no body) is 404, a
  count under 1 is 400;
- a VM is named by any FQDN (shortened to its first label), a malformed name is 400; its document has
  `remaining`, `start_time`, `end_time`, `fqdn`, `host` and `migrated`, and no `domain`;
- `PUT /vm/<host>` with an empty body changes nothing (200);
- `/status` takes `?view=`; `/poolstat` and `/totalrunning`; `/full_config`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import config_view, status, tokens, vms
from vmpooler_core import request as checkout_request
from vmpooler_core.checkout import Allocation
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest, UnknownPool
from vmpooler_core.request import CheckoutRequest

from . import routes_vm
from .endpoint import document, ok
from .guard import caller
from .inputs import auth_token, json_body
from .limits import RateClass
from .services import Services


def allocation_document(allocation: Allocation, config: Config) -> dict[str, Any]:
    """`{"ok": true, "<name asked for>": {"hostname": fqdn | [fqdn, ...]}, ...}`."""
    found: dict[str, list[str]] = {}
    for requested, pool, host in allocation.vms:
        domain = config.pool(pool).domain
        found.setdefault(requested, []).append(f"{host}.{domain}" if domain else host)
    doc: dict[str, Any] = {"ok": True}
    for requested, hosts in found.items():
        doc[requested] = {"hostname": hosts[0] if len(hosts) == 1 else hosts}
    return doc


def _v3(wanted: CheckoutRequest) -> CheckoutRequest:
    if not wanted.counts:
        raise UnknownPool("the request names no pool", ())
    for name, count in wanted.counts:
        if count < 1:
            raise InvalidRequest(f"count for {name!r} must be at least 1")
    return wanted


async def _body_or_empty(request: Request) -> Any:
    """The JSON body; an empty body is an empty object (as the original reads it)."""
    return {} if not (await request.body()).strip() else await json_body(request)


async def checkout_body(request: Request, services: Services) -> Response:
    async def parse() -> CheckoutRequest:
        return _v3(checkout_request.from_mapping(await _body_or_empty(request)))

    return await routes_vm.checkout(request, services, parse, allocation_document)


async def checkout_path(request: Request, services: Services) -> Response:
    async def parse() -> CheckoutRequest:
        return _v3(checkout_request.from_path(request.path_params["hostname"]))

    return await routes_vm.checkout(request, services, parse, allocation_document)


def host_of(request: Request) -> str:
    host = vms.first_label(request.path_params["hostname"])
    if not vms.HOST_RE.fullmatch(host):
        raise InvalidRequest(f"{host[:255]!r} is not a host name")
    return host


async def get_vm(request: Request, services: Services) -> Response:
    host = host_of(request)
    return ok({host: routes_vm.public(await vms.describe_v3(services.config, services.inventory, host))})


async def modify_vm(request: Request, services: Services) -> Response:
    host = host_of(request)
    vm, _state = await vms.load(services.inventory, host)  # unknown VM: 404 before the body is read
    await services.access.change(host, vm, await _body_or_empty(request), auth_token(request), caller(request))
    return ok()


async def return_vm(request: Request, services: Services) -> Response:
    host = host_of(request)
    await services.checkout.give_back(host, auth_token(request), routes_vm.rate(request, services, RateClass.RETURN),
                                      caller(request))
    return ok()


async def add_disk(request: Request, services: Services) -> Response:
    host = host_of(request)
    disk = await services.access.disk(host, request.path_params["size"], auth_token(request), caller(request))
    return ok({host: {"disk": disk}}, status=202)


async def take_snapshot(request: Request, services: Services) -> Response:
    host = host_of(request)
    name = await services.access.snapshot(host, auth_token(request), caller(request))
    return ok({host: {"snapshot": name}}, status=202)


async def revert_snapshot(request: Request, services: Services) -> Response:
    host = host_of(request)
    await services.access.revert(host, request.path_params["snapshot"], auth_token(request), caller(request))
    return ok(status=202)


def views(query: str) -> list[str] | None:
    """`?view=a,b`: those sections; a bare `?view` or none: every section; `?view=`: none but `status`."""
    chosen: list[str] | None = None
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if unquote_plus(name) == "view":
            chosen = [v for v in unquote_plus(value).split(",") if v] if eq else None
    return chosen


async def get_status(request: Request, services: Services) -> Response:
    return document(await status.status_v3(services.config, services.inventory, views(request.url.query)))


async def poolstat(request: Request, services: Services) -> Response:
    names = [name for name in request.query_params.get("pool", "").split(",") if name]
    return document(await status.poolstat(services.config, services.inventory, names))


async def total_running(request: Request, services: Services) -> Response:
    return document({"running": await status.total_running(services.config, services.inventory)})


async def full_config(request: Request, services: Services) -> Response:
    """The configuration, every secret masked; with auth configured, for token holders only (the
    original showed it, passwords and all, to anyone: B7.25)."""
    if services.access.enabled:
        await tokens.use(services.inventory, auth_token(request))
    return document({"full_config": config_view.full_config(services.config), "status": {"ok": True}})
