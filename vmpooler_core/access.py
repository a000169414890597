"""Who may do what to a VM or a token: the one statement of the rules, for the API and the CLI's Redis
backend alike (each front end only says how it reads the token or the user).

Without `auth:` configured, tokens mean nothing and there are no token routes, as in the original. With it,
the original's holes are closed (contract A7.4, A7.12):
- queued work on a VM (disk, snapshot, revert) needs a valid token, checked before the VM's existence is
  revealed, and a VM checked out with a token is worked on only with that token;
- a lifetime change needs a valid token, and that VM's own token when it was checked out with one;
- tags: anyone may set them, as in the original, unless `tag_owned_vms: owner`: then a VM checked out with
  a token is tagged only with that token; at most `max_tags_per_vm` tags per VM;
- a VM checked out with a token is returned only with it, while it exists (a revoked token returns
  nothing; checked in return.lua, atomically with the return);
- a token is revoked only by its owner (it is read by whoever holds it, as the original's clients expect).
What a write relies on (the token still exists, the VM is still its own, the VM's room for the tags) is
checked again in the write's own script (guards.py), so that a token revoked, or a VM handed to another
token, between the check and the write changes nothing. Tokens are compared in constant time
(vms.same_token).

The operations both front ends call (`change`, `disk`, `snapshot`, `revert`, `create_token`, `revoke`)
check, act and write the audit log's line (audit.py), naming the user of the token used, never the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import audit, tokens, vms
from .audit import ANONYMOUS, Caller
from .config import Config
from .errors import NotConfigured, NotFound, Unauthorized
from .guards import Guard
from .inventory import Inventory

AUTH_OFF = "authentication is not configured (the vmpooler config has no auth: section)"


class Access:
    def __init__(self, config: Config, inventory: Inventory) -> None:
        self.config = config
        self.inventory = inventory

    @property
    def enabled(self) -> bool:
        return self.config.auth_enabled

    def credited(self, token: str | None) -> str:
        """The token a checkout is made with: "" when none was sent or auth is off (it means nothing)."""
        return token if (token and self.enabled) else ""

    # VMs -----------------------------------------------------------------------------------------

    async def _valid_token(self, token: str | None) -> str | None:
        """The token's user; None with auth off (a token means nothing then)."""
        return await tokens.use(self.inventory, token) if self.enabled else None

    def _owner(self, vm: Mapping[str, str], token: str | None) -> None:
        owner = vm.get("token:token")
        if self.enabled and owner and not vms.same_token(owner, token):
            # "another token" only when one was sent: without one, saying so would send people hunting
            # for a token they never used.
            raise Unauthorized("this VM was checked out with another token" if token else
                               "this VM was checked out with a token, and none was sent")

    def _user(self, vm: Mapping[str, str], token: str | None, checked: str | None) -> str | None:
        """For the audit log: the user of the token a request was made with. `checked` when the token
        was looked up; else the VM's own user when the token is the VM's (no lookup needed)."""
        if checked or not self.enabled or not token:
            return checked
        owner = vm.get("token:token")
        return vm.get("token:user") if owner and vms.same_token(owner, token) else None

    def _guard(self, host: str, token: str | None, *, needs_token: bool, owner_only: bool,
               tags: Mapping[str, str] | None = None) -> Guard:
        """What the write checks again (guards.py): with `needs_token`, that the token still exists; with
        `owner_only`, that the VM is still unowned or the token's; and the VM's room for `tags`."""
        return Guard(host, owner=(token or "") if owner_only else None, token=token if needs_token else None,
                     most_tags=self.config.app.max_tags_per_vm, tags=tuple(tags or ()))

    async def _work_on(self, host: str, token: str | None) -> tuple[dict[str, str], str | None, Guard]:
        user = await self._valid_token(token)
        data, _state = await vms.load(self.inventory, host)
        self._owner(data, token)
        return data, user, self._guard(host, token, needs_token=self.enabled, owner_only=self.enabled)

    async def vm_for_work(self, host: str, token: str | None) -> dict[str, str]:
        """The VM's hash, for queueing disk, snapshot or revert work: the token first (Unauthorized before
        the VM's existence is revealed), then the VM (NotFound), then its owner (Unauthorized)."""
        return (await self._work_on(host, token))[0]

    def _tags_by_owner_only(self, vm: Mapping[str, str]) -> bool:
        """`tag_owned_vms: owner`: a VM checked out with a token is tagged only with it."""
        return self.enabled and self.config.app.tag_owned_vms == "owner" and bool(vm.get("token:token"))

    async def _judge(self, vm: Mapping[str, str], body: Any,
                     token: str | None) -> tuple[vms.Modification, str | None, bool]:
        """The change, the user of the token it is made with (for the audit log), and whether it needs
        that token (then the VM's own, when it was checked out with one)."""
        user = None
        needs_token = self.enabled and isinstance(body, Mapping) and (
            "lifetime" in body or ("tags" in body and self._tags_by_owner_only(vm)))
        if needs_token:
            if token:
                user = await tokens.use(self.inventory, token)
            vms.check_arguments(body)
            if not token:
                raise Unauthorized("changing a lifetime needs a token" if "lifetime" in body else
                                   "this VM was checked out with a token: only that token may tag it")
        change = vms.parse_modification(body, self.config)
        if needs_token:
            self._owner(vm, token)
        return change, self._user(vm, token, user), needs_token

    async def modification(self, vm: Mapping[str, str], body: Any, token: str | None) -> vms.Modification:
        """A change (`{"lifetime": ..., "tags": ...}`) to the VM whose hash is `vm`, validated and allowed.

        The order of the answers is the original's: a bad token is refused before the body is judged,
        unknown arguments before a missing token, a missing token before a bad value."""
        return (await self._judge(vm, body, token))[0]

    async def change(self, host: str, vm: Mapping[str, str], body: Any, token: str | None,
                     caller: Caller = ANONYMOUS) -> None:
        """Judge a change (as `modification`) and make it; one audit line per kind of change."""
        pool = vms.pool_of(vm)
        with audit.refusals("change", caller, pool=pool, host=host):
            change, user, needs_token = await self._judge(vm, body, token)
            # A VM that `tag_owned_vms: owner` lets anyone tag only while nobody holds it by a token.
            owner_only = needs_token or (self.enabled and self.config.app.tag_owned_vms == "owner")
            await vms.modify(self.inventory, host, change,
                             self._guard(host, token, needs_token=needs_token, owner_only=owner_only, tags=change.tags))
        who = caller.as_user(user)
        if change.lifetime is not None:
            audit.record("lifetime", who, pool=pool, host=host, hours=change.lifetime)
        if change.tags:
            audit.record("tags", who, pool=pool, host=host, tags=",".join(change.tags))

    async def disk(self, host: str, size: str, token: str | None, caller: Caller = ANONYMOUS) -> str:
        """Queue a disk of `size` GB for the VM; returns what the VM will show ("+8gb")."""
        with audit.refusals("disk", caller, host=host):
            vm, user, guard = await self._work_on(host, token)
            added = await vms.request_disk(self.inventory, host, size, guard)
        audit.record("disk", caller.as_user(user), pool=vms.pool_of(vm), host=host, disk=added)
        return added

    async def snapshot(self, host: str, token: str | None, caller: Caller = ANONYMOUS) -> str:
        """Queue a snapshot of the VM; returns its name."""
        with audit.refusals("snapshot", caller, host=host):
            vm, user, guard = await self._work_on(host, token)
            name = await vms.request_snapshot(self.inventory, host, guard)
        audit.record("snapshot", caller.as_user(user), pool=vms.pool_of(vm), host=host, snapshot=name)
        return name

    async def revert(self, host: str, snapshot: str, token: str | None, caller: Caller = ANONYMOUS) -> None:
        """Queue the VM's revert to one of its snapshots."""
        with audit.refusals("revert", caller, host=host):
            vm, user, guard = await self._work_on(host, token)
            await vms.request_revert(self.inventory, host, vm, snapshot, guard)
        audit.record("revert", caller.as_user(user), pool=vms.pool_of(vm), host=host, snapshot=snapshot)

    # Tokens ---------------------------------------------------------------------------------------

    def require_tokens(self) -> None:
        """Token routes exist only with auth configured (the original answers 404 without)."""
        if not self.enabled:
            raise NotConfigured(AUTH_OFF)

    async def create_token(self, user: str, caller: Caller = ANONYMOUS) -> str:
        self.require_tokens()
        token = await self.inventory.create_token(user)
        audit.record("token-create", caller.as_user(user))
        return token

    async def tokens_of(self, user: str) -> dict[str, dict[str, str]]:
        self.require_tokens()
        found = await tokens.of_user(self.inventory, user)
        if not found:
            raise NotFound(f"{user} has no tokens")
        return found

    async def token(self, token: str, user: str | None = None) -> dict[str, Any]:
        """The token and its running VMs; with `user`, only when it is theirs (None: the caller holds it)."""
        self.require_tokens()
        return await tokens.describe(self.config, self.inventory, token, user)

    async def revoke(self, token: str, user: str, caller: Caller = ANONYMOUS) -> None:
        self.require_tokens()
        who = caller.as_user(user)
        with audit.refusals("token-revoke", who, reason=False):  # its reasons name the token
            created = await tokens.revoke(self.inventory, token, user)
        audit.record("token-revoke", who, created=created)
