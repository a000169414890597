"""Is a VM up? The ready check chosen per pool (`ready_check:`), else by its provider.

    tcp       the guest is powered on and a TCP port (`ready_check_port`, 22 by default) accepts a
              connection, on hostname.domain (the original's check) or else on the guest IP
    hostname  the guest is powered on and reports the VM's hostname (guestinfo.hostname, set at clone)
    none      the guest is powered on

A ready VM is checked again every `vm_checktime`. A failure the guest itself reports (powered off, another
hostname) retires it at once. A failure to reach it (`Unreachable`: the port does not answer) may be ours
as much as the VM's (DNS, routing, a firewall on this side), so `ReadyWatch` has it checked again, after
RECHECK_AFTER and then twice as long each time (up to RECHECK_MAX), and retires it only after STRIKES
failures in a row; and when most of a pool's ready VMs cannot be reached at once, it retires none, and
health says why, for the fault is then almost surely on this side. (Destroying a ready VM on its first
failed check, a manager started on a host that could not reach the VMs on port 22 destroyed every ready
VM at once, then cloned replacements that never became ready either.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from vmpooler_core.provider import ReadyCheck, VmFacts

CONNECT_TIMEOUT = 5.0  # seconds, as the original's port-22 check
STRIKES = 3  # failed checks in a row before a ready VM that cannot be reached is retired
RECHECK_AFTER = 10.0  # seconds after a first failure before the next check; doubled after each one,
RECHECK_MAX = 60.0  # up to this


class Unreachable(str):
    """A check that failed for want of an answer (the port closed or silent), not for what the VM said."""


@dataclass(slots=True)
class _Suspect:
    strikes: int
    first: float  # epoch seconds of the first failure in a row
    next_check: float


@dataclass(frozen=True, slots=True)
class Verdict:
    retire: dict[str, str]  # host -> why: out of ready
    passed: list[str]  # checked and ready
    held: str | None  # why no VM was retired although some failed (health); None when none is held


@dataclass(slots=True)
class ReadyWatch:
    """The failed re-checks of one pool's ready VMs, across passes (in memory: a restarted manager gives
    every VM its full count again, which errs on the side of keeping it)."""

    suspects: dict[str, _Suspect] = field(default_factory=dict)

    def due(self, host: str, now: float) -> bool | None:
        """Whether a suspect is due for its next check; None for a VM that is not a suspect."""
        suspect = self.suspects.get(host)
        return None if suspect is None else now >= suspect.next_check

    def judge(self, results: dict[str, str | None], ready: set[str], now: float) -> Verdict:
        """The pass's check results of ready VMs (`ready`: all of the pool's ready VMs) -> what to do."""
        for host in [h for h in self.suspects if h not in ready]:
            del self.suspects[host]  # checked out, retired or forgotten meanwhile
        retire: dict[str, str] = {}
        passed: list[str] = []
        for host, reason in sorted(results.items()):
            if reason is None:
                passed.append(host)
                self.suspects.pop(host, None)
            elif not isinstance(reason, Unreachable):
                retire[host] = f"failed its check: {reason}"
                self.suspects.pop(host, None)
            else:
                suspect = self.suspects.setdefault(host, _Suspect(0, now, now))
                suspect.strikes += 1
                suspect.next_check = now + min(RECHECK_AFTER * 2 ** (suspect.strikes - 1), RECHECK_MAX)
                if suspect.strikes >= STRIKES:
                    retire[host] = (f"failed its check {suspect.strikes} times in a row over "
                                    f"{now - suspect.first:.0f}s: {reason}")
        unreachable = [h for h in sorted(self.suspects) if h in ready]
        if len(unreachable) >= 2 and 2 * len(unreachable) > len(ready):
            shown = " ".join(unreachable[:5]) + (f" and {len(unreachable) - 5} more" if len(unreachable) > 5 else "")
            last = next((f"; {results[h]}" for h in unreachable if results.get(h)), "")
            held = (f"{len(unreachable)} of its {len(ready)} ready VMs cannot be reached at once ({shown}{last}): "
                    "none is destroyed, the fault is likely on this side (DNS, routing, a firewall)")
            return Verdict({h: why for h, why in retire.items() if h not in self.suspects}, passed, held)
        for host in retire:
            self.suspects.pop(host, None)
        return Verdict(retire, passed, None)


@dataclass(frozen=True, slots=True)
class Probe:
    check: ReadyCheck
    port: int = 22
    domain: str | None = None
    timeout: float = CONNECT_TIMEOUT
    # The pool's failed re-checks (a reference: the probe is made once per pool and kept).
    watch: ReadyWatch = field(default_factory=ReadyWatch, compare=False)

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
        return Unreachable("port closed (" + ", ".join(reasons) + ")")


def _short(hostname: str | None) -> str:
    return (hostname or "").split(".", 1)[0]
