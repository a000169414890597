"""Logins against a real slapd, through a `vmpoolerd api` subprocess on loopback.

Starts its own redis-server, a slapd with a certificate from a test CA (tests.ldap_server,
tests.tls_certs) and the daemon with `auth: provider: ldap` (default settings but the host, port, base and
CA file: StartTLS, certificate verified, `timeout: 5`; the addresses come from X-Forwarded-For), then prints:

1. the time of a token request (POST /token, a right password) against slapd: median and p99, with
   StartTLS (the default) and with `encryption: none`, keep-alive, one at a time;
2. the answer and its time when the directory is stopped, and when it is frozen (SIGSTOP);
3. GET /status p50/p99 alone, and while 1,000 failed logins run beside it (8 at a time): from one address
   for one user (throttled after 5: answered 429 at once), and from 1,000 addresses for 1,000 users
   (never throttled: every one a bind on the directory); and, for comparison, while 1,000 GET /api/v1/vm
   run (what any 1,000 requests cost the one process that also answers /status).

    python bench/ldap_login.py [--logins 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api.test_daemon import wait_until_serving  # noqa: E402
from tests.ldap_server import PEOPLE, STAFF, USERS, LdapServer  # noqa: E402
from tests.processes import terminate  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.tls_certs import make_tls_files  # noqa: E402

PASSWORD = {user.name: user.password for user in USERS}


def basic(user: str, password: str, address: str = "10.9.9.9") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}", "X-Forwarded-For": address}


@contextmanager
def daemon(redis_url: str, ldap: LdapServer, ca: Path, workdir: Path, encryption: str) -> Iterator[str]:
    port = free_port()
    config = workdir / f"vmpooler-{encryption}.yaml"
    config.write_text(f"redis: {{url: '{redis_url}'}}\nconfig: {{log_level: ERROR}}\n"
                      f"auth:\n  provider: ldap\n  ldap:\n    host: localhost\n    port: {ldap.port}\n"
                      f"    base: ['{PEOPLE}', '{STAFF}']\n    encryption: {encryption}\n    ca_file: {ca}\n"
                      "rate_limits: {address_header: X-Forwarded-For}\n"
                      "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 5}\n")
    proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "api", "--config", str(config), "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url)
        yield url
    finally:
        terminate(proc, 10)


def ms(seconds: list[float], quantile: float) -> str:
    ordered = sorted(seconds)
    return f"{1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]:.1f}"


def token_times(url: str, count: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for number in range(count):
            started = time.perf_counter()
            address = f"10.1.{number // 250}.{number % 250}"
            response = http.post("/api/v1/token", headers=basic("jdoe", PASSWORD["jdoe"], address))
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return times


def outage(url: str, tries: int) -> tuple[int, str, list[float]]:
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for number in range(tries):
            started = time.perf_counter()
            # alice: jdoe's name is throttled by the floods before this
            response = http.post("/api/v1/token", headers=basic("alice", PASSWORD["alice"], f"10.2.0.{number}"))
            times.append(time.perf_counter() - started)
    return response.status_code, response.json()["reason"], times


async def status_under(url: str, flood: str | None, seconds: float = 4.0) -> tuple[list[float], dict[int, int]]:
    """GET /status latencies, one at a time, while `flood` runs: "one" (failed logins, one user from one
    address), "many" (1,000 users from 1,000 addresses), "vm" (for comparison, 1,000 GET /api/v1/vm: the
    cost of any 1,000 requests on the same process) or None."""
    answers: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, \
            httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=8)) as attackers:
        queue = asyncio.Queue[int]()
        for number in range(1000 if flood else 0):
            queue.put_nowait(number)

        async def attacker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                user, address = ("jdoe", "10.3.0.1") if flood == "one" else (
                    f"user{number}", f"10.4.{number // 250}.{number % 250}")
                if flood == "vm":
                    response = await attackers.get("/api/v1/vm")
                else:
                    response = await attackers.post("/api/v1/token", headers=basic(user, f"guess{number}", address))
                answers[response.status_code] = answers.get(response.status_code, 0) + 1

        attacking = [asyncio.create_task(attacker()) for _ in range(8)]
        latencies: list[float] = []
        until = time.monotonic() + seconds

        def going() -> bool:  # alone: for `seconds`; else for as long as the flood lasts
            return not all(task.done() for task in attacking) if flood else time.monotonic() < until

        while going():
            started = time.perf_counter()
            response = await http.get("/api/v1/status")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
        await asyncio.gather(*attacking)
    return latencies, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vmpooler-ldap-bench-"))
    files = make_tls_files(workdir / "tls")
    redis_server = RedisServer().start()
    ldap = LdapServer(tls=files).start()
    try:
        for encryption in ("start_tls", "none"):
            with daemon(redis_server.url, ldap, files.ca, workdir, encryption) as url:
                times = token_times(url, args.logins)
                print(f"POST /token, right password, encryption {encryption}: median {ms(times, 0.5)} ms, "
                      f"p99 {ms(times, 0.99)} ms ({len(times)} requests)")
        with daemon(redis_server.url, ldap, files.ca, workdir, "start_tls") as url:
            for flood in (None, "vm", "one", "many"):
                latencies, answers = asyncio.run(status_under(url, flood))
                label = {None: "alone", "vm": "during 1,000 GET /api/v1/vm (for comparison)",
                         "one": "during 1,000 failed logins, one user from one address",
                         "many": "during 1,000 failed logins, 1,000 users from 1,000 addresses"}[flood]
                print(f"GET /status {label}: p50 {ms(latencies, 0.5)} ms, p99 {ms(latencies, 0.99)} ms "
                      f"({len(latencies)} requests){f'; the flood was answered {answers}' if answers else ''}")
            ldap.freeze()
            status, reason, times = outage(url, 3)
            print(f"directory frozen: HTTP {status} in {statistics.median(times):.2f} s (median of 3): {reason}")
            ldap.stop()
            status, reason, times = outage(url, 20)
            print(f"directory stopped: HTTP {status} in {ms(times, 0.5)} ms (median of 20): {reason}")
    finally:
        ldap.remove()
        redis_server.stop()


if __name__ == "__main__":
    main()
