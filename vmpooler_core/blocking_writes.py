"""Writes of the blocking client (the dummy provider's threads) behind the fence, as the asyncio runners'.

The dummy provider keeps its VMs in Redis, where the manager's inventory is: a clone it recorded on a
former primary that Sentinel is about to demote would be thrown away with the primary's other late
writes, and the VM would be lost from the "vCenter" while the inventory holds it. So its writes go
through write.lua behind fence.lua, like the API's plain writes (scripts.py).

A refusal is not resolved here: this client cannot ask the sentinels whether a failover is under way
(only the asyncio `Sentinels` can), so it asks its pool to follow the primary if the sentinels name a new
one and raises `FailingOver` (a redis ConnectionError: the provider reports itself unavailable and the
manager tries again on its next pass). When no failover is under way (a replica restarted), the
manager's own fenced scripts, which run at every heartbeat, drop the missing replica from the record
within a second, and the next call goes through.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from . import primary, scripts
from .keys import Keys
from .primary import FailingOver


class BlockingWrites:
    """`__call__(*commands)`: the commands (each a tuple of words, the command first) run as one fenced
    script; the reply of each."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._prefix = keys.prefix
        self._flagged = True  # Redis before 7 cannot read the flags line: sent without it from then on
        self._lock = threading.Lock()

    def __call__(self, *commands: tuple[str, ...]) -> list[Any]:
        args: list[str] = [self._prefix, ""]  # no deadline: the manager's thread waits for its answer
        for command in commands:
            args += [str(len(command)), *command]
        while True:
            flagged = self._flagged
            try:
                return list(self._once(flagged, args))
            except ResponseError as err:
                text = str(err)
                if flagged and "near '#'" in text and "compil" in text:
                    with self._lock:
                        self._flagged = False
                    continue
                if text.startswith(("FENCED ", "NOREPLICAS")):
                    primary.follow_blocking(self._client)
                    raise FailingOver(f"redis refuses writes ({text.split(' ', 1)[0]}): the primary lost a "
                                      "replica or is short of replicas; retried on the next pass") from err
                raise

    def _once(self, flagged: bool, args: list[str]) -> Any:
        try:
            return self._client.evalsha(scripts.digest("write", flagged), 0, *args)
        except NoScriptError:
            return self._client.eval(scripts.source("write", flagged), 0, *args)
