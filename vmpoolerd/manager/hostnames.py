"""VM hostnames as the original makes them: the configured prefix, then 15 random characters, the first
a letter a-y (a hostname must not start with a digit) and then 14 of a-z0-9: 25 x 36^14 names, so a
collision is rare, and `add_pending.lua` refuses one that is already recorded."""

from __future__ import annotations

import secrets
import string

_FIRST = string.ascii_lowercase[:25]
_REST = string.ascii_lowercase + string.digits


def new_hostname(prefix: str = "") -> str:
    return prefix + secrets.choice(_FIRST) + "".join(secrets.choice(_REST) for _ in range(14))
