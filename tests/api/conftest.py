"""Fixtures for the API tests: the app on a real Redis, with its lifespan running (TestClient in a
`with` block), in the configuration of the original's API specs (contract A8)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
import redis

from tests.conftest import make_config
from vmpooler_core.auth import UsersAuthenticator, hash_password
from vmpooler_core.config import Secret
from vmpooler_core.metrics import Metrics, NullMetrics
from vmpoolerd.api import create_app

with warnings.catch_warnings():
    # Starlette 1.x would rather its test client ran on httpx2; httpx works the same for these tests.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

# The original's specs: auth stubbed to accept exactly admin / s3cr3t; token owned by jdoe.
PASSWORDS = {"admin": "s3cr3t", "jdoe": "jdoe-secret"}
# Few PBKDF2 rounds: the tests check the protocol, not the cost of guessing.
HASHES = {user: hash_password(password, iterations=1000) for user, password in PASSWORDS.items()}
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"

A8_POOLS = """
providers: {dummy: {}}
pools:
  - {name: pool1, alias: [poolone], size: 5}
  - {name: pool2, size: 10}
"""
NO_ALIAS_POOLS = """
providers: {dummy: {}}
pools:
  - {name: pool1, size: 5}
  - {name: pool2, size: 10}
"""

MakeClient = Callable[..., AbstractContextManager[TestClient]]


def config_text(redis_url: str, *, auth: bool = False, pools: str = A8_POOLS, app: str = "") -> str:
    users = "".join(f"\n    {user}: '{digest}'" for user, digest in HASHES.items())
    auth_yaml = f"auth:\n  provider: users\n  users:{users}\n" if auth else ""
    return (f"redis: {{url: '{redis_url}', socket_timeout: 1}}\n"
            f"config:\n  vm_lifetime_auth: 2\n{app}\n{auth_yaml}{pools}")


@pytest.fixture(scope="session")
def authenticator() -> UsersAuthenticator:
    # Built once: it hashes a dummy password at full cost for timing safety.
    return UsersAuthenticator({user: Secret(digest) for user, digest in HASHES.items()})


@pytest.fixture
def make_client(redis_url: str, authenticator: UsersAuthenticator) -> MakeClient:
    """`with make_client(auth=True, pools=..., app="  domain: company.com") as client: ...`"""

    @contextmanager
    def make(*, auth: bool = False, pools: str = A8_POOLS, app: str = "", metrics: Metrics | None = None,
             deadline: float | None = None, raise_server_exceptions: bool = True) -> Iterator[TestClient]:
        config = make_config(config_text(redis_url, auth=auth, pools=pools, app=app))
        api = create_app(config, metrics=metrics or NullMetrics(), authenticator=authenticator if auth else None,
                         deadline=deadline)
        with TestClient(api, raise_server_exceptions=raise_server_exceptions) as client:
            yield client

    return make


@pytest.fixture
def client(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client() as client:
        yield client


@pytest.fixture
def auth_client(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client(auth=True) as client:
        yield client


@pytest.fixture
def r(sync_redis: redis.Redis) -> redis.Redis:
    return sync_redis
