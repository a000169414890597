"""What a write to a VM checks again inside the script that makes it (lua/write.lua's conditions).

access.py judges a request on what it read: the token exists, the VM is its own, the VM has room for the
tags. Between that read and the write another client may revoke the token, or the VM may change hands;
the guard repeats those checks in the write's own script, so a write is made only if they still hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidRequest, Unauthorized
from .keys import Keys
from .replies import UnexpectedReply


@dataclass(frozen=True, slots=True)
class Guard:
    host: str
    # The VM must have been checked out with no token or with this one ("": the request sent none).
    # None: whoever holds the VM, the write is allowed.
    owner: str | None = None
    token: str | None = None  # this token must still exist (not revoked meanwhile)
    tags: tuple[str, ...] = ()  # tags the write adds: with them the VM may carry at most `most_tags`
    most_tags: int = 0

    def conditions(self, keys: Keys) -> list[tuple[str, ...]]:
        vm = keys.vm(self.host)
        found: list[tuple[str, ...]] = []
        if self.owner is not None:
            found.append(("IF_OWNER", vm, self.owner))
        if self.token is not None:
            found.append(("IF_TOKEN", keys.token(self.token)))
        if self.tags:
            found.append(("IF_TAGS", vm, str(self.most_tags), *(f"tag:{name}" for name in self.tags)))
        return found

    def refusal(self, why: str) -> Exception:
        """The error for write.lua's refusal `why`."""
        if why == "owner":
            return Unauthorized(f"{self.host} was checked out with another token")
        if why == "revoked":
            return Unauthorized("the X-AUTH-TOKEN has been revoked")
        if why == "tags":
            return InvalidRequest(f"{self.host} would carry more than {self.most_tags} tags (max_tags_per_vm)")
        return UnexpectedReply("write", ["refused", why])
