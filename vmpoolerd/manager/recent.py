"""Hosts whose provider call (a clone, a destroy) ended recently, and when: an inventory read before that
moment may show them as they were before, and a pass that started from such a read must not act on it."""

from __future__ import annotations

import time

REMEMBER = 300.0  # seconds an ended call is remembered: far longer than any pass


class Recent:
    def __init__(self) -> None:
        self._ended: dict[str, float] = {}  # host -> monotonic time its call ended

    def ended(self, host: str) -> None:
        self._ended[host] = time.monotonic()

    def since(self, moment: float) -> set[str]:
        """Hosts whose call ended at or after `moment` (monotonic)."""
        horizon = time.monotonic() - REMEMBER
        for host in [h for h, at in self._ended.items() if at < horizon]:
            del self._ended[host]
        return {host for host, at in self._ended.items() if at >= moment}
