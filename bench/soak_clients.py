"""The soak run's clients and their ledger of who holds which VM (see bench/soak.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.soak_setup import POOLS, Daemon, candidates  # noqa: E402

# The clients' ledger ------------------------------------------------------------------------------

@dataclass
class Ledger:
    """What the clients saw; one event loop, so no locks. `holders` is the double-hand-out check."""

    holders: dict[str, int] = field(default_factory=dict)  # host -> client holding it
    handed: set[str] = field(default_factory=set)  # every host ever handed out
    twice: set[str] = field(default_factory=set)  # hosts handed out a second time, or to two clients at once
    returning: set[str] = field(default_factory=set)  # hosts whose return is under way (its answer not in)
    violations: list[str] = field(default_factory=list)  # double hand-outs, wrong VMs, held VMs taken away
    anomalies: list[str] = field(default_factory=list)  # other unexpected answers (a 500, a 4xx)
    checkouts: int = 0
    vms_handed: int = 0
    returns: int = 0
    lifetimes: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "op kind" -> failed attempts
    gave_up: Counter[str] = field(default_factory=Counter)  # op -> requests abandoned after retries
    in_doubt_checkouts: int = 0  # attempts whose answer was lost: VMs may have been taken
    in_doubt_vms: int = 0  # how many VMs those attempts asked for
    successes: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, done, daemon) of checkouts

    def hand_out(self, client: int, hosts: list[str]) -> None:
        for host in hosts:
            if host in self.holders:
                self.violations.append(f"{host} handed to client {client} while client {self.holders[host]} held it")
                self.twice.add(host)
            elif host in self.handed:
                self.violations.append(f"{host} handed out a second time (to client {client})")
                self.twice.add(host)
            self.holders[host] = client
            self.handed.add(host)
        self.vms_handed += len(hosts)

    def release(self, client: int, host: str) -> None:
        holder = self.holders.pop(host, None)
        if holder != client:
            self.violations.append(f"client {client} returned {host}, held by {holder}")


class Outcome:
    """The end of one request after its retries."""

    def __init__(self, status: int | None, body: Any, in_doubt: bool, daemon: int, sent: float) -> None:
        self.status = status  # None: gave up
        self.body = body
        self.in_doubt = in_doubt  # an earlier attempt may have been carried out
        self.daemon = daemon
        self.sent = sent  # monotonic time the successful attempt was sent


# Transport failures where the request never reached the server: safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _reason_kind(body: Any) -> str:
    reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
    if reason.startswith("not enough ready VMs"):
        return "empty"
    if reason.startswith("redis is unavailable"):
        return "redis"
    if "did not answer in time" in reason:
        return "deadline"
    if "(durability:" in reason:
        return "durability"
    return reason[:40] or "?"


class Client:
    """One simulated user: checkout, lifetime change or return at random, holding a few VMs at a time."""

    def __init__(self, index: int, daemons: list[Daemon], ledger: Ledger, rng: random.Random) -> None:
        self.index = index
        self.daemons = daemons
        self.ledger = ledger
        self.rng = rng
        self.held: list[str] = []
        self.maybe_returned: set[str] = set()  # a return given up on after an attempt whose answer was lost
        self.names = candidates()
        self.pool_names = [p.name for p in POOLS]
        self.aliases = sorted({a for p in POOLS for a in p.aliases})

    async def call(self, http: httpx.AsyncClient, op: str, method: str, path: str, body: Any = None,
                   budget: float = 6.0, asked: int = 0) -> Outcome:
        """One request with retries on connection errors and 503s (small jittered backoff), bounded by
        `budget` seconds. Every failed attempt is counted by kind."""
        deadline = time.monotonic() + budget
        daemon = self.rng.randrange(len(self.daemons))
        in_doubt = False
        for attempt in range(60):
            sent = time.monotonic()
            try:
                response = await http.request(method, self.daemons[daemon].url + path, json=body)
            except httpx.HTTPError as err:
                self.ledger.errors[f"{op} {type(err).__name__}"] += 1
                if not isinstance(err, _NOT_SENT):
                    in_doubt = True
                    if op == "checkout":
                        self.ledger.in_doubt_checkouts += 1
                        self.ledger.in_doubt_vms += asked
                daemon = (daemon + 1) % len(self.daemons)  # that daemon may be dead: try the next
            else:
                try:
                    payload = response.json()
                except ValueError:
                    payload = None
                if response.status_code != 503:
                    return Outcome(response.status_code, payload, in_doubt, daemon, sent)
                kind = _reason_kind(payload)
                self.ledger.errors[f"{op} 503 {kind}"] += 1
                # Redis may have run the script before the answer was lost; or ran it and did not confirm it
                # as `durability` asks (a return so answered is not undone: inventory.return_vm).
                if kind in ("redis", "deadline", "durability"):
                    in_doubt = True
                    if op == "checkout":
                        self.ledger.in_doubt_checkouts += 1
                        self.ledger.in_doubt_vms += asked
                daemon = self.rng.randrange(len(self.daemons))
            pause = min(1.0, 0.05 * 2 ** attempt) * self.rng.uniform(0.5, 1.0)
            if time.monotonic() + pause > deadline:
                break
            await asyncio.sleep(pause)
        self.ledger.gave_up[op] += 1
        return Outcome(None, None, in_doubt, daemon, 0.0)

    def _wanted(self) -> dict[str, int]:
        kind = self.rng.choices(("pool", "alias", "shared", "multi"), weights=(35, 25, 20, 20))[0]
        if kind == "multi":
            first, second = self.rng.sample(self.pool_names + self.aliases, 2)
            return {first: self.rng.choice((1, 2)), second: 1}
        name = {"pool": lambda: self.rng.choice(self.pool_names), "alias": lambda: self.rng.choice(self.aliases),
                "shared": lambda: "el"}[kind]()
        return {name: self.rng.choices((1, 2, 3), weights=(6, 3, 1))[0]}

    async def checkout(self, http: httpx.AsyncClient) -> None:
        wanted = self._wanted()
        asked = sum(wanted.values())
        if self.rng.random() < 0.5:  # the path form: a+a+b
            path, body = "/api/v1/vm/" + "+".join(n for n, c in wanted.items() for _ in range(c)), None
        else:  # the JSON form, with the original clients' string counts
            path, body = "/api/v1/vm", {n: str(c) for n, c in wanted.items()}
        out = await self.call(http, "checkout", "POST", path, body, budget=6.0, asked=asked)
        if out.status is None:
            return
        if out.status != 200:
            self.ledger.errors[f"checkout {out.status}"] += 1
            self.ledger.anomalies.append(f"checkout {wanted} answered {out.status}: {out.body}")
            return
        hosts = self._hosts(wanted, out.body)
        self.ledger.checkouts += 1
        self.ledger.successes.append((out.sent, time.monotonic(), out.daemon))
        self.ledger.hand_out(self.index, hosts)
        self.held += hosts

    def _hosts(self, wanted: dict[str, int], body: Any) -> list[str]:
        """The hostnames of a 200 answer; checks they are as many as asked, from pools that may serve them."""
        allowed = set().union(*(self.names[name] for name in wanted))
        hosts: list[str] = []
        for key, value in body.items():
            if key in ("ok", "domain"):
                continue
            if key not in allowed:
                self.ledger.violations.append(f"checkout {wanted} answered with pool {key}")
            found = value["hostname"]
            hosts += [found] if isinstance(found, str) else list(found)
        if len(hosts) != sum(wanted.values()) or len(set(hosts)) != len(hosts):
            self.ledger.violations.append(f"checkout {wanted} answered {hosts}")
        return hosts

    async def give_back(self, http: httpx.AsyncClient, host: str, budget: float = 10.0) -> bool:
        self.ledger.returning.add(host)
        try:
            return await self._give_back(http, host, budget)
        finally:
            self.ledger.returning.discard(host)

    async def _give_back(self, http: httpx.AsyncClient, host: str, budget: float) -> bool:
        out = await self.call(http, "return", "DELETE", f"/api/v1/vm/{host}", budget=budget)
        if out.status is None:
            if out.in_doubt:
                self.maybe_returned.add(host)
            return False  # still held: returned later
        if out.status == 200 or (out.status == 404 and (out.in_doubt or host in self.maybe_returned)):
            # A 404 after an attempt whose answer was lost: that attempt returned it.
            self.ledger.returns += 1
            self.ledger.release(self.index, host)
            self.held.remove(host)
            return True
        if out.status == 404:
            # Not running, and not by our doing: someone else returned it, or it was taken from us.
            self.ledger.violations.append(f"return of held {host} answered 404: {out.body}")
            self.held.remove(host)
            self.ledger.holders.pop(host, None)
            return False
        self.ledger.errors[f"return {out.status}"] += 1
        self.ledger.anomalies.append(f"return of held {host} answered {out.status}: {out.body}")
        return False  # still held: tried again later (a VM the checker finds running is returned then)

    async def change_lifetime(self, http: httpx.AsyncClient, host: str) -> None:
        hours = self.rng.randint(1, 12)
        out = await self.call(http, "lifetime", "PUT", f"/api/v1/vm/{host}", {"lifetime": hours})
        if out.status == 200:
            self.ledger.lifetimes += 1
        elif out.status is not None:
            self.ledger.errors[f"lifetime {out.status}"] += 1
            self.ledger.anomalies.append(f"lifetime of held {host} answered {out.status}: {out.body}")

    async def run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(5.0, connect=1.0)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while not stop.is_set():
                roll = self.rng.random()
                if not self.held or (len(self.held) < 4 and roll < 0.45):
                    await self.checkout(http)
                elif roll < 0.65:
                    await self.change_lifetime(http, self.rng.choice(self.held))
                else:
                    await self.give_back(http, self.rng.choice(self.held))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rng.uniform(0.05, 0.3))
            # The end: everything held goes back, with time to spare (the faults are over).
            for _ in range(5):
                for host in list(self.held):
                    await self.give_back(http, host, budget=20.0)
                if not self.held:
                    break


