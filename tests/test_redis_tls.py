"""TLS (a CA made for the test, verification on), an ACL user and a unix socket, through `redis:` keys
that issue 20 (report 5) found ignored; each reaches a real redis-server from the API, the manager's
provider client and the CLI alike. A certificate that cannot be verified is refused, with a reason
naming the setting to fix."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from tests.api.helpers import expect_json, ready
from tests.conftest import make_config
from tests.redis_server import RedisServer
from tests.tls_certs import TlsFiles, make_tls_files
from vmpooler_cli.app import cli
from vmpooler_core.config import Config
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.redis_client import connect_blocking
from vmpoolerd.api import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

PASSWORD = "tls-Secret-7"
POOLS = "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n"
UNTRUSTED = ("the TLS certificate of redis is not signed by a CA this client trusts: set redis.ssl_ca_certs to "
             "the certificate of the CA that signed it (VMPOOLER_REDIS_SSL_CA_CERTS)")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    # The server's certificate names only `localhost`: reaching it as 127.0.0.1 is a name mismatch.
    return make_tls_files(tmp_path_factory.mktemp("tls"), hosts=("localhost",))


@pytest.fixture(scope="module")
def tls_server(tls: TlsFiles) -> Iterator[RedisServer]:
    server = RedisServer(tls=tls).start()
    admin = redis.Redis(host="localhost", port=server.port, ssl=True, ssl_ca_certs=str(tls.ca))
    admin.execute_command("ACL", "SETUSER", "vmpooler", "on", f">{PASSWORD}", "~vmpooler__*", "+@all")
    admin.close()
    yield server
    server.stop()


@pytest.fixture
def admin(tls_server: RedisServer, tls: TlsFiles) -> Iterator[redis.Redis]:
    client = redis.Redis(host="localhost", port=tls_server.port, ssl=True, ssl_ca_certs=str(tls.ca),
                         ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.client_key), decode_responses=True)
    client.flushall()
    yield client
    client.close()


def tls_config(tmp_path: Path, port: int, lines: str, server: str = "localhost") -> Path:
    path = tmp_path / "vmpooler.yaml"
    path.write_text(f"redis:\n  server: {server}\n  port: {port}\n  socket_timeout: 2\n{lines}{POOLS}")
    return path


def checkout_status(config: Config) -> tuple[int, dict[str, object]]:
    with TestClient(create_app(config, metrics=NullMetrics())) as client:
        response = client.post("/api/v1/vm/pool1")
        return response.status_code, response.json()


def test_tls_with_a_test_ca_and_an_acl_user(tmp_path: Path, tls_server: RedisServer, tls: TlsFiles,
                                            admin: redis.Redis) -> None:
    """Report 5: `username:`, `ssl:` and `ssl_ca_certs:` were ignored; they reach the server now, from
    the API, a provider's blocking client, and the CLI."""
    path = tls_config(tmp_path, tls_server.port, f"  username: vmpooler\n  password: '{PASSWORD}'\n  ssl: true\n"
                                                 f"  ssl_ca_certs: '{tls.ca}'\n")
    config = make_config(path.read_text())
    ready(admin, "pool1", "vm1")
    assert checkout_status(config) == (200, {"ok": True, "pool1": {"hostname": "vm1"}})
    assert admin.smembers("vmpooler__running__pool1") == {"vm1"}
    blocking = connect_blocking(config.redis)
    assert blocking.acl_whoami() == "vmpooler"  # the ACL user, not the default one
    blocking.close()
    ready(admin, "pool1", "vm2")
    result = CliRunner().invoke(cli, ["--redis-from-config", "--config", str(path), "checkout", "pool1"])
    assert (result.exit_code, result.stdout) == (0, "vm2\n"), result.stderr


@pytest.mark.parametrize(("server", "lines", "reason"), [
    ("localhost", "", UNTRUSTED),  # the system's CAs: none of them signed the test CA's certificate
    ("localhost", "  ssl_ca_certs: '{other_ca}'\n", UNTRUSTED),
    ("127.0.0.1", "  ssl_ca_certs: '{ca}'\n",
     "the TLS certificate of redis does not name the host it was reached by: reach it by a name the certificate "
     "has, or set redis.ssl_check_hostname: false"),
])
def test_a_certificate_that_cannot_be_verified_is_refused(tmp_path: Path, tls_server: RedisServer, tls: TlsFiles,
                                                          admin: redis.Redis, server: str, lines: str,
                                                          reason: str) -> None:
    lines = lines.format(ca=tls.ca, other_ca=tls.other_ca)
    path = tls_config(tmp_path, tls_server.port, f"  ssl: true\n{lines}", server)
    ready(admin, "pool1", "vm1")
    status, body = checkout_status(make_config(path.read_text()))
    assert status == 503 and body["code"] == "backend_unavailable" and body["reason"] == reason, body
    assert admin.smembers("vmpooler__ready__pool1") == {"vm1"}
    result = CliRunner().invoke(cli, ["--redis-from-config", "--config", str(path), "pools"])
    assert result.exit_code == 6 and reason in result.stderr, result.stderr


def test_no_hostname_check_when_told_so(tmp_path: Path, tls_server: RedisServer, tls: TlsFiles,
                                        admin: redis.Redis) -> None:
    text = (f"redis:\n  server: 127.0.0.1\n  port: {tls_server.port}\n  ssl: true\n  ssl_ca_certs: '{tls.ca}'\n"
            f"  ssl_check_hostname: false\n{POOLS}")
    ready(admin, "pool1", "vm1")
    assert checkout_status(make_config(text)) == (200, {"ok": True, "pool1": {"hostname": "vm1"}})


def test_a_client_certificate_when_redis_asks_for_one(tmp_path: Path, tls: TlsFiles) -> None:
    server = RedisServer(tls=tls, tls_clients=True).start()
    try:
        base = f"redis:\n  server: localhost\n  port: {server.port}\n  ssl: true\n  ssl_ca_certs: '{tls.ca}'\n"
        status, body = checkout_status(make_config(base + POOLS))
        # Whether the server's TLS alert arrives before it closes the connection is a matter of timing.
        assert status == 503 and body["code"] == "backend_unavailable", body
        assert "client certificate" in body["reason"] and "set redis.ssl_certfile and redis.ssl_keyfile" in \
            body["reason"], body
        with_cert = f"{base}  ssl_certfile: '{tls.client_cert}'\n  ssl_keyfile: '{tls.client_key}'\n{POOLS}"
        status, body = checkout_status(make_config(with_cert))
        assert (status, body["code"]) == (503, "no_capacity"), body  # Redis answered: the pool is empty
    finally:
        server.stop()


def test_a_unix_socket(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(unix_socket=str(socket_path)).start()
    try:
        direct = redis.Redis(unix_socket_path=str(socket_path), db=1, decode_responses=True)
        ready(direct, "pool1", "vm1")
        path = tmp_path / "vmpooler.yaml"
        path.write_text(f"redis:\n  unix_socket: redis.sock\n  db: 1\n{POOLS}")  # relative to the file
        status, body = checkout_status(make_config(path.read_text().replace("redis.sock", str(socket_path))))
        assert (status, body) == (200, {"ok": True, "pool1": {"hostname": "vm1"}})
        ready(direct, "pool1", "vm2")
        result = CliRunner().invoke(cli, ["--redis-from-config", "--config", str(path), "checkout", "pool1"])
        assert (result.exit_code, result.stdout) == (0, "vm2\n"), result.stderr
        assert direct.smembers("vmpooler__running__pool1") == {"vm1", "vm2"}
        direct.close()
    finally:
        server.stop()


def test_no_password_is_shown_in_a_tls_failure(tmp_path: Path, tls_server: RedisServer) -> None:
    text = tls_config(tmp_path, tls_server.port, f"  username: vmpooler\n  password: '{PASSWORD}'\n  ssl: true\n"
                                                 ).read_text()
    config = make_config(text)
    with TestClient(create_app(config, metrics=NullMetrics())) as client:
        body = expect_json(client.get("/api/v1/status"), False, 503)
    assert PASSWORD not in str(body) and PASSWORD not in repr(config)
