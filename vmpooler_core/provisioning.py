"""On-demand provisioning as a client sees it: make a request, follow it, delete it; with the access rules
and the audit lines. The API's /api/v3/ondemandvm routes call this (vmpoolerd/api/routes_ondemand.py).

Access (with `auth:` configured; without it tokens mean nothing, as in the original):
- a request needs a valid token (the original's rule), and its VMs are checked out with it; with
  `max_vms_per_token`, a request that would take the token over it (counting the VMs it holds and those its
  open requests have still to deliver) is refused (403), as a checkout is;
- only that same token may delete it (the original let any valid token delete any request, B7.25).
Anyone may read a request, as in the original: its id is the secret.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

from . import audit, clock, ondemand, tokens, vms
from .audit import ANONYMOUS, Caller
from .config import Config
from .errors import TooManyVms, Unauthorized, VmpoolerError
from .inventory import Inventory
from .ondemand import DuplicateRequest, NoSuchRequest, Wanted
from .ondemand_store import Deleted, RequestState, RequestStore
from .replies import TooMany

MAX_ID = 256  # the longest request id looked up


class Provisioning:
    def __init__(self, config: Config, inventory: Inventory, rng: random.Random | None = None) -> None:
        self.config = config
        self.inventory = inventory
        self.store = RequestStore(inventory)
        self.rng = rng or random.Random()

    async def submit(self, wanted: Wanted | Callable[[], Awaitable[Wanted]], token: str | None = None,
                     caller: Caller = ANONYMOUS) -> str:
        """The request's id. Unauthorized (auth configured, no valid token), then whatever reading `wanted`
        raises (it may be a function that reads it: after the token, as the original does), UnknownPool,
        InvalidRequest, TooManyInstances or DuplicateRequest; each before anything is written."""
        names = "-"
        try:
            user = await tokens.use(self.inventory, token) if self.config.auth_enabled else None
            if not isinstance(wanted, Wanted):
                wanted = await wanted()
            names = "+".join(wanted.names())
            ondemand.validate(wanted, self.config)
            request_id = wanted.request_id or ondemand.new_id()
            parts = ondemand.parts(wanted, self.config, self.rng)
            held_by = (token or "", user) if user else ("", "")  # with auth: the VMs are checked out to the token
            done = await self.store.submit(request_id, parts, int(time.time()), *held_by,
                                           cap=self.config.app.max_vms_per_token, demand=self.config.demand_width)
            if isinstance(done, TooMany):
                raise TooManyVms(done.held, done.cap)
            if not done:
                raise DuplicateRequest(request_id)
        except VmpoolerError as err:
            audit.refused("ondemand", caller, err, pool=names)
            raise
        audit.record("ondemand", caller.as_user(user), pool=names, id=request_id,
                     parts=ondemand.encode(parts))
        return request_id

    async def status(self, request_id: str) -> RequestState:
        """NoSuchRequest for an unknown id. Any id is looked up (the original's clients may have chosen ids
        that ours may not: REQUEST_ID_RE applies to new requests), within reason."""
        state = await self.store.read(request_id) if len(request_id) <= MAX_ID else None
        if state is None:
            raise NoSuchRequest(request_id)
        return state

    async def delete(self, request_id: str, token: str | None = None, caller: Caller = ANONYMOUS) -> bool:
        """Close the request, its VMs delivered so far given back; False when it was deleted before.
        Unauthorized before the request's existence is revealed, NoSuchRequest."""
        try:
            user = await tokens.use(self.inventory, token) if self.config.auth_enabled else None
            state = await self.status(request_id)
            if self.config.auth_enabled and state.token and not vms.same_token(state.token, token):
                raise Unauthorized("this request was made with another token")
            entry = audit.entry("return", clock.stamp(), user=user or audit.NOBODY, client=caller.client,
                                request=caller.request_id, detail=f"on-demand request {request_id} deleted")
            done = await self.store.delete(request_id, entry)
            if done is Deleted.NO_SUCH_REQUEST:
                raise NoSuchRequest(request_id)
        except VmpoolerError as err:
            audit.refused("ondemand delete", caller, err)
            raise
        audit.record("ondemand delete", caller.as_user(user), id=request_id)
        return done is Deleted.NOW
