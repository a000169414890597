"""Is a VM up? The ready check chosen per pool (`ready_check:`), else by its provider.

    tcp       the guest is powered on and a TCP port (`ready_check_port`, 22 by default) accepts a
              connection, on hostname.domain (the original's check) or else on the guest IP
    hostname  the guest is powered on and reports the VM's hostname (guestinfo.hostname, set at clone)
    none      the guest is powered on
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from vmpooler_core.provider import ReadyCheck, VmFacts

CONNECT_TIMEOUT = 5.0  # seconds, as the original's port-22 check


@dataclass(frozen=True, slots=True)
class Probe:
    check: ReadyCheck
    port: int = 22
    domain: str | None = None
    timeout: float = CONNECT_TIMEOUT

    async def booted(self, host: str, facts: VmFacts) -> str | None:
        """None when the VM is ready; else why not (for the log)."""
        if not facts.powered_on:
            return "powered off"
        if self.check == "hostname":
            reported = _short(facts.guest_hostname)
            return None if reported == host else f"guest hostname is {reported or 'not reported'}"
        if self.check == "tcp":
            return await self._port_open(host, facts)
        return None

    async def still_ready(self, host: str, facts: VmFacts) -> str | None:
        """The re-check of a ready VM. Unlike `booted`, a hostname that is not reported (tools restarting)
        is not held against it; a different one is."""
        if self.check == "hostname" and facts.powered_on and facts.guest_hostname is None:
            return None
        return await self.booted(host, facts)

    async def _port_open(self, host: str, facts: VmFacts) -> str | None:
        targets = [f"{host}.{self.domain}" if self.domain else host]
        if facts.guest_ip:
            targets.append(facts.guest_ip)
        reasons = []
        for target in targets:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(target, self.port), self.timeout)
            except (OSError, TimeoutError) as err:
                reasons.append(f"{target}:{self.port} {type(err).__name__}")
                continue
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # it answered; how the connection ends does not matter
            return None
        return "port closed (" + ", ".join(reasons) + ")"


def _short(hostname: str | None) -> str:
    return (hostname or "").split(".", 1)[0]
