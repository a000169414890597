"""Failed logins against a real slapd: one audit line each (user, client address, reason), escaped;
throttled per user name and per address with growing delays (429 with Retry-After, the directory not
asked), counted before the check so a concurrent burst cannot all get through; nobody else slowed."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis

from tests.api.conftest import TestClient, config_text
from tests.api.helpers import K, basic
from tests.conftest import make_config
from tests.ldap_server import PEOPLE, STAFF, USERS, LdapServer
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app

PASSWORD = {user.name: user.password for user in USERS}
ALLOWED = 5  # auth.failed_logins.allowed, the default


@contextmanager
def ldap_client(redis_url: str, port: int, failed_logins: str = "") -> Iterator[TestClient]:
    auth = (f"auth:\n  provider: ldap\n  ldap:\n    host: 127.0.0.1\n    port: {port}\n"
            f"    base: ['{PEOPLE}', '{STAFF}']\n    encryption: none\n{failed_logins}"
            "rate_limits: {address_header: X-Forwarded-For}\n")
    config = make_config(config_text(redis_url, app="  access_log: true") + auth)
    with TestClient(create_app(config, metrics=NullMetrics()), raise_server_exceptions=False) as client:
        yield client


def login(client: TestClient, user: str, password: str, address: str) -> tuple[int, int | None]:
    """(status, Retry-After) of a POST /token from `address`."""
    # As bytes: a header may carry any byte above 127 (and a C1 control is one).
    response = client.post("/api/v1/token", headers={**basic(user, password),
                                                     "X-Forwarded-For": address.encode("latin-1")})
    after = response.headers.get("retry-after")
    return response.status_code, int(after) if after is not None else None


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "vmpooler.audit"]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="vmpooler.access")
    caplog.set_level(logging.INFO, logger="vmpooler.audit")
    return caplog


def test_a_thousand_failed_logins_are_throttled_logged_one_line_each_and_slow_nobody_else(
        ldap_server: LdapServer, redis_url: str, logs: pytest.LogCaptureFixture) -> None:
    others: list[tuple[int, int | None]] = []
    with ldap_client(redis_url, ldap_server.port) as client:
        started = time.monotonic()
        outcomes = []
        for number in range(1000):
            outcomes.append(login(client, "jdoe", f"guess{number}", "10.0.0.1"))
            if number % 100 == 99:  # someone else, from elsewhere, meanwhile: served at once
                others.append(login(client, "alice", PASSWORD["alice"], "10.0.0.2"))
                others.append((client.get("/api/v1/status").status_code, None))
        elapsed = time.monotonic() - started
    asked = [outcome for outcome in outcomes if outcome[0] == 401]
    throttled = [outcome for outcome in outcomes if outcome[0] == 429]
    # The first ALLOWED are asked; after that one more each time the delay (1 s, then 2, 4...) has passed.
    assert ALLOWED <= len(asked) <= ALLOWED + math.ceil(math.log2(elapsed + 1)) + 1, (len(asked), elapsed)
    assert len(asked) + len(throttled) == 1000 and all(after is not None and after >= 1 for _, after in throttled)
    assert others == [(200, None)] * 20
    lines = [line for line in audit_lines(logs) if line.startswith("login refused")]
    assert len(lines) == 1000
    assert all(" user=jdoe client=10.0.0.1 request=" in line for line in lines)
    assert sum('code=unauthorized reason="the user name or password is wrong"' in line for line in lines) == len(asked)
    assert sum("code=rate_limited" in line and "too many failed logins for this user name" in line
               for line in lines) == len(throttled)
    assert not any("guess" in record.getMessage() for record in logs.records)  # no password in any line


def test_a_concurrent_burst_gets_no_more_guesses_than_one_at_a_time(ldap_server: LdapServer, redis_url: str) -> None:
    # Counted before the check: a check made after each failure would let all 200 reach the directory.
    with ldap_client(redis_url, ldap_server.port) as client, ThreadPoolExecutor(20) as pool:
        started = time.monotonic()
        statuses = list(pool.map(lambda n: login(client, "jdoe", f"guess{n}", "10.0.0.1")[0], range(200)))
        elapsed = time.monotonic() - started
    assert statuses.count(401) + statuses.count(429) == 200
    assert ALLOWED <= statuses.count(401) <= ALLOWED + math.ceil(math.log2(elapsed + 1)) + 1, statuses.count(401)


def rewind(r: redis.Redis, *keys: str, seconds: float) -> None:
    """As if the last failure of each key had been `seconds` earlier."""
    for key in keys:
        r.hset(key, "at", int(r.hget(key, "at")) - int(seconds * 1000))  # type: ignore[arg-type]


def test_the_delay_doubles_up_to_its_maximum_and_a_right_password_clears_the_user(
        ldap_server: LdapServer, redis_url: str, r: redis.Redis) -> None:
    user_key, address_key = K.failed_logins("user", "jdoe"), K.failed_logins("address", "10.0.0.1")
    with ldap_client(redis_url, ldap_server.port, "  failed_logins: {max_delay_user: 4}\n") as client:
        assert [login(client, "jdoe", "wrong", "10.0.0.1") for _ in range(ALLOWED)] == [(401, None)] * ALLOWED
        waits = []
        for _ in range(4):
            status, after = login(client, "jdoe", "wrong", "10.0.0.1")
            assert status == 429 and after is not None
            waits.append(after)
            rewind(r, user_key, address_key, seconds=after)
            assert login(client, "jdoe", "wrong", "10.0.0.1") == (401, None)
        assert waits == [1, 2, 4, 8]  # the address's delay goes on doubling past the user's maximum
        # The right password while throttled is not even tried: a throttled guess tells nothing.
        assert login(client, "jdoe", PASSWORD["jdoe"], "10.0.0.3")[0] == 429
        rewind(r, user_key, seconds=4)
        assert login(client, "jdoe", PASSWORD["jdoe"], "10.0.0.3") == (200, None)
    assert not r.exists(user_key) and int(r.hget(address_key, "n")) == ALLOWED + 4  # type: ignore[arg-type]


def test_throttling_is_per_user_name_and_per_address(ldap_server: LdapServer, redis_url: str) -> None:
    with ldap_client(redis_url, ldap_server.port) as client:
        for typed in ("jdoe", "JDOE", " jdoe", "jDoe", "jdoe "):  # one name to the throttle, however typed
            assert login(client, typed, "wrong", "10.0.0.1")[0] == 401
        assert login(client, "jdoe", "wrong", "10.0.0.1")[0] == 429
        assert login(client, "jdoe", PASSWORD["jdoe"], "10.0.0.9")[0] == 429  # the name is throttled anywhere
        assert login(client, "alice", PASSWORD["alice"], "10.0.0.1")[0] == 429  # and the address for anyone
        assert login(client, "alice", PASSWORD["alice"], "10.0.0.9")[0] == 200  # everyone else: not at all
        assert login(client, "carol", "wrong", "10.0.0.9")[0] == 401


def test_a_user_name_cannot_forge_or_colour_a_log_line(ldap_server: LdapServer, redis_url: str,
                                                      logs: pytest.LogCaptureFixture) -> None:
    forged = "evil\nlogin refused user=root client=1.2.3.4\x1b[2J\x1b[31m\u202e\x85"
    with ldap_client(redis_url, ldap_server.port) as client:
        assert login(client, forged, "wrong", "10.0.0.1\x9b31m")[0] == 401
    (line,) = [line for line in audit_lines(logs) if line.startswith("login refused")]
    assert line.startswith('login refused pool=- vm=- user="evil\\nlogin refused user=root client=1.2.3.4'
                           '\\u001b[2J\\u001b[31m\\u202e\\u0085" client="10.0.0.1')
    assert '\\u009b31m" request=' in line  # the C1 escape (CSI) from the header: escaped too
    (access,) = [record.getMessage() for record in logs.records if record.name == "vmpooler.access"]
    assert ' client="10.0.0.1' in access and '\\u009b31m" request=' in access
    for record in logs.records:
        text = record.getMessage()
        assert text.isascii() and text.isprintable(), text
