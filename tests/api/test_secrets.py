"""No answer, log line, error message or repr ever shows a password: the Redis password (as a key, in a
URL, from the environment), a vCenter password, the users' passwords and their stored hashes.

Redis runs with --requirepass. Every kind of answer is collected (successes, each error status, the 500
path, /metrics, the OpenAPI document, the dashboard) with every log record at DEBUG, from the app in
process and from the real daemon; then none of the secrets may appear anywhere in it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.api.conftest import HASHES, PASSWORDS, TestClient
from tests.api.helpers import basic, ready
from tests.api.test_daemon import start, wait_until_serving
from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from vmpooler_cli.app import cli
from vmpooler_core import config_loader, vms
from vmpooler_core.auth import UsersAuthenticator
from vmpooler_core.config import Secret
from vmpooler_core.errors import ConfigError
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app
from vmpoolerd.prometheus import Registry, Tee

REDIS_PASSWORD = "redis-Pa55w0rd-q81x"
VSPHERE_PASSWORD = "vsphere-Pa55w0rd-k27z"
# Every secret, and for each stored hash its digest alone (a log might show just that part).
SECRETS = [REDIS_PASSWORD, VSPHERE_PASSWORD, *PASSWORDS.values(), *HASHES.values(),
           *(digest.rsplit("$", 1)[1] for digest in HASHES.values())]


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=REDIS_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def locked(locked_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client of the password-protected Redis, emptied first."""
    client = redis.Redis(port=locked_redis.port, password=REDIS_PASSWORD, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def config_yaml(server: RedisServer, redis_section: str) -> str:
    users = "".join(f"\n    {user}: '{digest}'" for user, digest in HASHES.items())
    return (f"{redis_section}\nauth:\n  provider: users\n  users:{users}\n"
            f"providers:\n  vsphere:\n    server: vc.example\n    username: vmpooler\n"
            f"    password: '{VSPHERE_PASSWORD}'\n"
            "config:\n  max_vms_per_token: 1\n"
            "rate_limits:\n  enabled: true\n  checkout: {limit: 3}\n"
            "pools:\n  - {name: pool1, size: 2, provider: dummy}\n")


def redis_sections(server: RedisServer, password: str = REDIS_PASSWORD) -> dict[str, str]:
    return {
        "password key": f"redis: {{server: 127.0.0.1, port: {server.port}, password: '{password}', socket_timeout: 1}}",
        "password in url": f"redis: {{url: 'redis://:{password}@127.0.0.1:{server.port}/0', socket_timeout: 1}}",
    }


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password shows: ...{text[max(0, text.find(secret) - 200):][:400]}..."


def exercise(client: httpx.Client) -> list[httpx.Response]:
    """One of every kind of answer the API gives."""
    admin = basic("admin", PASSWORDS["admin"])
    answers = [client.get(path) for path in ("/api/v1/status", "/api/v1/summary", "/healthcheck", "/metrics",
                                             "/api/v1/openapi.json", "/dashboard/", "/api/v1/vm", "/nowhere")]
    answers.append(client.get("/api/v1/token", headers=basic("admin", "wrong-" + PASSWORDS["admin"])))
    created = client.post("/api/v1/token", headers=admin)
    answers.append(created)
    token = created.json().get("token", "") if created.status_code == 200 else ""
    answers += [client.get("/api/v1/token", headers=admin), client.get(f"/api/v1/token/{token}", headers=admin)]
    # 200, then 403 (max_vms_per_token), then 429 (the checkout rate limit)
    answers += [client.post("/api/v1/vm/pool1", headers={"X-AUTH-TOKEN": token}) for _ in range(4)]
    answers += [client.post("/api/v1/vm", content=b"{not json"), client.put("/api/v1/vm/nosuchvm", json={}),
                client.delete("/api/v1/vm/secretvm"), client.patch("/api/v1/vm"),
                client.get("/api/v1/vm/" + "a" * 9000), client.get("/api/v1/status", headers={"x-big": "a" * 20000})]
    answers.append(client.get("/api/v1/vm/secretvm"))  # the 500 path (see the test)
    return answers


def rendered(answers: list[httpx.Response]) -> str:
    return "\n".join(f"{a.status_code} {dict(a.headers)} {a.text}" for a in answers)


@pytest.mark.parametrize("form", ["password key", "password in url"])
def test_no_answer_or_log_line_shows_a_password(locked_redis: RedisServer, locked: redis.Redis, form: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(config_yaml(locked_redis, redis_sections(locked_redis)[form]))
    assert_no_secret(repr(config) + str(config))

    async def buggy(config: object, inventory: object, host: str, *args: object, **kwargs: object) -> None:
        # A bug whose message carries the whole config and the Redis client: the 500's log line shows
        # the message, so their reprs must hide the passwords.
        raise RuntimeError(f"bug describing {host} with {config!r} on {inventory.redis!r}")  # type: ignore[attr-defined]

    monkeypatch.setattr(vms, "describe", buggy)
    prometheus = Registry()
    authenticator = UsersAuthenticator({user: Secret(digest) for user, digest in HASHES.items()})
    app = create_app(config, metrics=Tee(NullMetrics(), prometheus), authenticator=authenticator,
                     prometheus=prometheus)
    ready(locked, "pool1", "vm1", "vm2")
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = exercise(client)
    codes = {a.status_code for a in answers}
    assert {200, 400, 401, 403, 404, 405, 414, 429, 431, 500, 503} <= codes, codes
    assert any("RuntimeError" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
    assert_no_secret(rendered(answers) + caplog.text + "".join(rec.getMessage() for rec in caplog.records))


@pytest.mark.parametrize("form", ["password key", "password in url"])
def test_a_wrong_redis_password_is_reported_without_it(locked_redis: RedisServer, form: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-" + REDIS_PASSWORD
    config = make_config(config_yaml(locked_redis, redis_sections(locked_redis, wrong)[form]))
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(config, metrics=NullMetrics())) as client:
        answers = [client.get("/api/v1/status"), client.get("/healthcheck"), client.post("/api/v1/vm/pool1")]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert "AuthenticationError" in caplog.text  # the reason is said...
    assert_no_secret(rendered(answers) + caplog.text)  # ...the password is not (wrong or right)
    assert wrong not in rendered(answers) + caplog.text


def test_config_errors_do_not_show_passwords(locked_redis: RedisServer) -> None:
    bad = [
        f"redis: {{url: 'http://:{REDIS_PASSWORD}@127.0.0.1/0'}}",  # a URL of the wrong scheme
        f"redis: {{password: '{REDIS_PASSWORD}', port: 0}}",
        f"providers:\n  vsphere:\n    password: '{VSPHERE_PASSWORD}'\n",  # no server
        "auth:\n  provider: users\n  users_file: nowhere.txt\n",
    ]
    for text in bad:
        with pytest.raises(ConfigError) as err:
            make_config(text)
        assert_no_secret(str(err.value) + repr(err.value))
    with pytest.raises(ConfigError) as err:
        config_loader.load(text="redis: {url: 'http://x'}\n", env={"VMPOOLER_REDIS_URL": f"ftp://:{REDIS_PASSWORD}@h"})
    assert "environment VMPOOLER_REDIS_URL" in str(err.value)
    assert_no_secret(str(err.value))


def test_the_daemon_and_the_cli_never_print_a_password(locked_redis: RedisServer, locked: redis.Redis,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "vmpooler.yaml"
    path.write_text(config_yaml(locked_redis, redis_sections(locked_redis)["password key"]))
    ready(locked, "pool1", "vm1", "vm2")
    port = free_port()
    proc = start(["api", "--config", str(path), "--port", str(port), "--log-level", "debug"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url)
        with httpx.Client(base_url=url) as client:
            answers = exercise(client)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    assert "API listening" in stderr  # the log was written, at DEBUG
    assert_no_secret(rendered(answers) + stdout + stderr)
    # The daemon's probe and the CLI, with the right password and with a wrong one.
    env = {"VMPOOLER_REDIS_PASSWORD": "wrong-" + REDIS_PASSWORD}
    check = start(["--check", "--config", str(path)], env=env)
    check_out, check_err = check.communicate(timeout=30)
    assert check.returncode != 0
    assert_no_secret(check_out + check_err)
    runner = CliRunner()
    for password in (REDIS_PASSWORD, "wrong-" + REDIS_PASSWORD):
        redis_url = f"redis://:{password}@127.0.0.1:{locked_redis.port}/0"
        result = runner.invoke(cli, ["--redis", redis_url, "--config", str(path), "pools"], env={})
        assert_no_secret(result.stdout + result.stderr)
        assert password not in result.stdout + result.stderr
