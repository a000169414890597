"""`/vm` routes: pool names, checkout (JSON body or `a+a+b` path), one VM's details, changes, return,
disk and snapshot requests. Each handler parses input, calls the core once and renders the result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmpooler_core import request as checkout_request
from vmpooler_core import vms
from vmpooler_core.checkout import Allocation
from vmpooler_core.config import Config
from vmpooler_core.errors import InvalidRequest, NotFound
from vmpooler_core.metrics import Outcome
from vmpooler_core.ratelimit import Bucket
from vmpooler_core.request import CheckoutRequest

from .endpoint import document, ok
from .guard import caller
from .inputs import auth_token, hostname, json_body
from .limits import RateClass
from .responses import JsonResponse
from .services import Services


def allocation_document(allocation: Allocation, config: Config) -> dict[str, Any]:
    """`{"ok": true, "<pool>": {"hostname": h | [h, ...]}, ..., "domain": d}`: keyed by the real
    pool name even when an alias was asked for; one VM is a string, several a list; domain last."""
    doc: dict[str, Any] = {"ok": True}
    for pool, hosts in allocation.by_pool().items():
        doc[pool] = {"hostname": hosts[0] if len(hosts) == 1 else hosts}
    if config.app.domain:
        doc["domain"] = config.app.domain
    return doc


async def list_pools(request: Request, services: Services) -> Response:
    return document([pool.name for pool in services.config.pools])


def rate(request: Request, services: Services, request_class: RateClass) -> Bucket | None:
    return services.limiter.bucket(request, request_class) if services.limiter is not None else None


Render = Callable[[Allocation, Config], dict[str, Any]]


async def checkout(request: Request, services: Services, parse: Callable[[], Awaitable[CheckoutRequest]],
                   render: Render = allocation_document) -> Response:
    """Parse (a 404 or 400 is counted as an invalid checkout), check out, render (API v1's shape unless
    told otherwise)."""
    try:
        wanted = await parse()
    except (InvalidRequest, NotFound):
        # Malformed or odd names: counted as the original counts a null body, never as a metric name.
        services.metrics.checkout(Outcome.INVALID)
        raise
    allocation = await services.checkout.take(wanted, token=auth_token(request),
                                              rate=rate(request, services, RateClass.CHECKOUT), caller=caller(request))
    return JsonResponse(render(allocation, services.config))


async def checkout_body(request: Request, services: Services) -> Response:
    async def parse() -> CheckoutRequest:
        return checkout_request.from_mapping(await json_body(request))

    return await checkout(request, services, parse)


async def checkout_path(request: Request, services: Services) -> Response:
    async def parse() -> CheckoutRequest:
        return checkout_request.from_path(request.path_params["hostname"])

    return await checkout(request, services, parse)


async def get_vm(request: Request, services: Services) -> Response:
    host = hostname(request, services.config)
    return ok({host: public(await vms.describe(services.config, services.inventory, host))})


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """Anyone may read a VM's document (as in the original): its history here says what happened and for
    whom, but not from which address; the audit log and the CLI on Redis (admins) have that too."""
    if "history" in doc:
        doc["history"] = [{k: v for k, v in entry.items() if k != "client"} for entry in doc["history"]]
    return doc


async def modify_vm(request: Request, services: Services) -> Response:
    host = hostname(request, services.config)
    vm, _state = await vms.load(services.inventory, host)  # unknown VM: 404 before the body is read
    await services.access.change(host, vm, await json_body(request), auth_token(request), caller(request))
    return ok()


async def return_vm(request: Request, services: Services) -> Response:
    host = hostname(request, services.config)
    await services.checkout.give_back(host, auth_token(request), rate(request, services, RateClass.RETURN),
                                      caller(request))
    return ok()


def _work_host(request: Request, services: Services) -> str:
    # The host name is checked by the policy, after the token: 401 before a VM's existence is revealed.
    return vms.shorten(request.path_params["hostname"], services.config.app.domain)


async def add_disk(request: Request, services: Services) -> Response:
    host = _work_host(request, services)
    disk = await services.access.disk(host, request.path_params["size"], auth_token(request), caller(request))
    return ok({host: {"disk": disk}}, status=202)


async def take_snapshot(request: Request, services: Services) -> Response:
    host = _work_host(request, services)
    name = await services.access.snapshot(host, auth_token(request), caller(request))
    return ok({host: {"snapshot": name}}, status=202)


async def revert_snapshot(request: Request, services: Services) -> Response:
    host = _work_host(request, services)
    await services.access.revert(host, request.path_params["snapshot"], auth_token(request), caller(request))
    return ok(status=202)
