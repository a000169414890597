"""Who may do what to a VM or a token: the one statement of the rules, for the API and the CLI's Redis
backend alike (each front end only says how it reads the token or the user).

Without `auth:` configured, tokens mean nothing and there are no token routes, as in the original. With it,
the original's holes are closed (contract A7.4, A7.12):
- queued work on a VM (disk, snapshot, revert) needs a valid token, checked before the VM's existence is
  revealed, and a VM checked out with a token is worked on only with that token;
- a lifetime change needs a valid token, and that VM's own token when it was checked out with one;
- a VM checked out with a token is returned only with it (checked in return.lua, atomically with the return);
- a token is read or revoked only by its owner.
Tokens are compared in constant time (vms.same_token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import tokens, vms
from .config import Config
from .errors import NotConfigured, NotFound, Unauthorized
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

    async def _valid_token(self, token: str | None) -> None:
        if self.enabled:
            await tokens.use(self.inventory, token)

    def _owner(self, vm: Mapping[str, str], token: str | None) -> None:
        owner = vm.get("token:token")
        if self.enabled and owner and not vms.same_token(owner, token):
            raise Unauthorized("this VM was checked out with another token")

    async def vm_for_work(self, host: str, token: str | None) -> dict[str, str]:
        """The VM's hash, for queueing disk, snapshot or revert work: the token first (Unauthorized before
        the VM's existence is revealed), then the VM (NotFound), then its owner (Unauthorized)."""
        await self._valid_token(token)
        data, _state = await vms.load(self.inventory, host)
        self._owner(data, token)
        return data

    async def modification(self, vm: Mapping[str, str], body: Any, token: str | None) -> vms.Modification:
        """A change (`{"lifetime": ..., "tags": ...}`) to the VM whose hash is `vm`, validated and allowed.

        The order of the answers is the original's: a bad token is refused before the body is judged,
        unknown arguments before a missing token, a missing token before a bad value."""
        if self.enabled and isinstance(body, Mapping) and "lifetime" in body:
            if token:
                await tokens.use(self.inventory, token)
            vms.check_arguments(body)
            if not token:
                raise Unauthorized("changing a lifetime needs a token")
        change = vms.parse_modification(body, self.config)
        if change.lifetime is not None:
            self._owner(vm, token)
        return change

    # Tokens ---------------------------------------------------------------------------------------

    def require_tokens(self) -> None:
        """Token routes exist only with auth configured (the original answers 404 without)."""
        if not self.enabled:
            raise NotConfigured(AUTH_OFF)

    async def create_token(self, user: str) -> str:
        self.require_tokens()
        return await self.inventory.create_token(user)

    async def tokens_of(self, user: str) -> dict[str, dict[str, str]]:
        self.require_tokens()
        found = await tokens.of_user(self.inventory, user)
        if not found:
            raise NotFound(f"{user} has no tokens")
        return found

    async def token(self, token: str, user: str) -> dict[str, Any]:
        self.require_tokens()
        return await tokens.describe(self.config, self.inventory, token, user)

    async def revoke(self, token: str, user: str) -> None:
        self.require_tokens()
        await tokens.revoke(self.inventory, token, user)
