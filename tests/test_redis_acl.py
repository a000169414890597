"""Redis with ACL users, as operators run it: the least ACL the README documents runs the daemon (API and
manager) and the CLI with nothing refused; a user lacking one permission, or given the wrong password,
gets 503 JSON answers whose reason names what to fix, one log line per change of state, the reason in
/healthcheck and `vmpoolerd --check`, and a clean exit 0 on SIGTERM. Real redis-server, real vmpoolerd."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.daemon.procs import Daemon, clean_env, console_script, wait_until
from tests.processes import STARTUP_SECONDS
from tests.redis_server import RedisServer
from vmpooler_cli.app import cli
from vmpooler_core.auth import hash_password
from vmpooler_core.keys import Keys

K = Keys()
README = Path(__file__).resolve().parents[1] / "README.md"
PASSWORD = "acl-Secret-9"  # the ACL user's; never to be shown
USER_PASSWORD = "s3cr3t"  # jdoe's, for tokens over the API


def least_acl() -> list[str]:
    """The rules of the README's `ACL SETUSER vmpooler on >PASSWORD ...` line, as documented."""
    found = re.search(r"^ACL SETUSER vmpooler on >PASSWORD (.+)$", README.read_text(), re.MULTILINE)
    assert found, "the README documents no least ACL line"
    return found.group(1).split()


def test_the_least_acl_grants_every_command_a_script_calls() -> None:
    """Every command the Lua scripts name (a path the daemon test below may not walk: a failed login, a
    task taken back) is granted; the write script's commands are the callers', which the test below runs."""
    lua = Path(__file__).resolve().parents[1] / "vmpooler_core" / "lua"
    called = {name.lower() for path in lua.glob("*.lua")
              for name in re.findall(r"redis\.p?call\('([A-Za-z]+)'", path.read_text())}
    granted = {rule[1:] for rule in least_acl() if rule.startswith("+")}
    assert called - granted == set(), f"scripts call commands the least ACL does not grant: {called - granted}"


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    server = RedisServer().start()  # the default user stays open: it is the tests' admin
    yield server
    server.stop()


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True)


def set_user(server: RedisServer, rules: list[str], password: str = PASSWORD) -> None:
    with admin(server) as r:
        r.execute_command("ACL", "SETUSER", "vmpooler", "reset", "on", f">{password}", *rules)
        r.execute_command("ACL", "LOG", "RESET")


def acl_log(server: RedisServer) -> list[dict[str, object]]:
    with admin(server) as r:
        return list(r.execute_command("ACL", "LOG"))


def write_config(path: Path, server: RedisServer, *, redis_lines: str | None = None) -> Path:
    lines = redis_lines if redis_lines is not None else (
        f"  server: 127.0.0.1\n  port: {server.port}\n  username: vmpooler\n  password: '{PASSWORD}'\n")
    path.write_text(
        f"redis:\n{lines}  socket_timeout: 2\n"
        "config:\n  domain: company.com\n  manager_loop_seconds: 0.2\n  manager_backoff_max: 0.5\n"
        "  vm_checktime: 0\n  manager_lease_seconds: 5\n"
        f"auth:\n  provider: users\n  users:\n    jdoe: '{hash_password(USER_PASSWORD, iterations=1000)}'\n"
        "rate_limits:\n  enabled: true\n  checkout: {limit: 1000, period: 60}\n  return: {limit: 1000, period: 60}\n"
        "  other: {limit: 1000, period: 60}\n"
        "providers:\n  dummy: {clone_time: 0, boot_time: 0}\n"
        "pools:\n  - {name: pool1, size: 2, alias: [poolone]}\n  - {name: pool2, size: 1}\n")
    return path


def ready_count(daemon: Daemon, pool: str) -> int:
    try:
        response = daemon.get("/api/v1/status")
    except httpx.TransportError:
        return -1
    if response.status_code != 200:
        return -1
    return int(response.json()["pools"][pool]["ready"])


def vmp(*args: str, config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--redis-from-config", "--config", str(config), *args],
                                env={"VMPOOLER_USER": "jdoe", **(env or {})}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def check(config: Path, tmp_path: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([*console_script("vmpoolerd"), "--check", "--config", str(config)],
                          env=clean_env(tmp_path), capture_output=True, text=True, timeout=30)
    return done.returncode, json.loads(done.stdout)


def test_the_least_acl_runs_the_daemon_and_the_cli(acl_server: RedisServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    set_user(acl_server, least_acl())
    config = write_config(tmp_path / "vmpooler.yaml", acl_server)
    daemon = Daemon(tmp_path, ["--config", str(config)]).start()
    try:
        # A fill pass: the manager registers the pools, takes their leases, clones and readies VMs.
        wait_until(lambda: ready_count(daemon, "pool1") == 2 and ready_count(daemon, "pool2") == 1, 30,
                   f"the pools filled by a manager logged in as the ACL user:\n{daemon.log()}")
        basic = ("jdoe", USER_PASSWORD)
        token = httpx.post(daemon.url + "/api/v1/token", auth=basic, timeout=5).json()["token"]
        assert token in httpx.get(daemon.url + "/api/v1/token", auth=basic, timeout=5).json()
        headers = {"X-AUTH-TOKEN": token}
        taken = httpx.post(daemon.url + "/api/v1/vm/poolone", headers=headers, timeout=5)
        assert taken.status_code == 200, taken.text
        host = taken.json()["pool1"]["hostname"].split(".")[0]
        for method, path, body in (("GET", f"/api/v1/vm/{host}", None),
                                   ("PUT", f"/api/v1/vm/{host}", {"lifetime": 3, "tags": {"owner": "jdoe"}}),
                                   ("POST", f"/api/v1/vm/{host}/snapshot", None),
                                   ("POST", f"/api/v1/vm/{host}/disk/8", None),
                                   ("GET", "/api/v1/summary", None), ("GET", "/healthcheck", None),
                                   ("GET", "/metrics", None), ("DELETE", f"/api/v1/vm/{host}", None)):
            answer = httpx.request(method, daemon.url + path, json=body, headers=headers, timeout=5)
            assert answer.status_code in (200, 202), (method, path, answer.status_code, answer.text)
        # The manager destroys the returned VM and fills its place again.
        with admin(acl_server) as r:
            wait_until(lambda: not r.exists(K.vm(host)) or r.hget(K.vm(host), "destroy"), 30,
                       "the returned VM destroyed")
        wait_until(lambda: ready_count(daemon, "pool1") == 2, 30, "pool1 refilled")
        code, verdict = check(config, tmp_path)
        assert code == 0 and verdict["reason"] == "healthy", verdict

        # The CLI, on the config's `redis:` settings (the same ACL user).
        monkeypatch.delenv("VMPOOLER_REDIS_URL", raising=False)
        code, out, err = vmp("token", "create", config=config)
        assert code == 0, err
        cli_token = out.strip()
        with_token = {"VMPOOLER_TOKEN": cli_token}
        code, out, err = vmp("checkout", "pool2", config=config, env=with_token)
        assert code == 0, err
        vm = out.strip().split(".")[0]
        for args in (("show", vm), ("lifetime", vm, "4"), ("tag", vm, "team=qa"), ("snapshot", vm), ("pools",),
                     ("status",), ("return", vm), ("token", "list"), ("token", "delete", cli_token)):
            code, out, err = vmp(*args, config=config, env=with_token)
            assert code == 0, (args, err)
        assert acl_log(acl_server) == [], "Redis refused the least ACL user something"
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.cleanup()
    assert acl_log(acl_server) == [], "Redis refused the least ACL user something during the stop"
    assert "Traceback" not in daemon.log() and PASSWORD not in daemon.log()


def _without(rules: list[str], *dropped: str) -> list[str]:
    assert all(rule in rules for rule in dropped), dropped
    return [rule for rule in rules if rule not in dropped]


@pytest.mark.parametrize(("lacking", "rules", "reason"), [
    ("scripting", lambda rules: _without(rules, "+evalsha", "+eval"),
     "redis ACL user 'vmpooler' may not run EVALSHA: grant +evalsha +eval"),
    ("key pattern", lambda rules: ["~other__*" if rule.startswith("~") else rule for rule in rules],
     "redis ACL user 'vmpooler' may not use the keys vmpooler uses: grant ~vmpooler__*"),
])
def test_a_user_lacking_one_permission_gets_503_with_the_reason(acl_server: RedisServer, tmp_path: Path,
                                                                lacking: str, rules: object, reason: str) -> None:
    """Issue 20, report 4: every route answered 500, the manager logged a traceback twice a second, and
    SIGTERM exited 1. (The credentials are in the url, the form that worked before `username:` existed.)"""
    assert callable(rules)
    set_user(acl_server, rules(least_acl()))
    config = write_config(tmp_path / "vmpooler.yaml", acl_server,
                          redis_lines=f"  url: 'redis://vmpooler:{PASSWORD}@127.0.0.1:{acl_server.port}/0'\n")
    daemon = Daemon(tmp_path, ["--config", str(config)]).start()
    try:
        wait_until(lambda: "API listening" in daemon.log(), STARTUP_SECONDS, "the API listening")
        for method, path in (("GET", "/api/v1/status"), ("POST", "/api/v1/vm/pool1"), ("DELETE", "/api/v1/vm/vm1"),
                             ("GET", "/healthcheck")):
            answer = wait_until(lambda m=method, p=path: _answer(daemon, m, p), 20, f"{method} {path} answered")
            assert answer.status_code == 503, (method, path, answer.text)
            body = answer.json()
            assert body["ok"] is False and body["code"] == "backend_unavailable", body
            assert body["reason"].startswith(reason), body
        code, verdict = check(config, tmp_path)
        assert code == 1 and str(verdict["reason"]).startswith(reason), verdict
        # The manager retries (every 0.5 s at most) and the API answers many requests: one line each.
        wait_until(lambda: daemon.log().count("vmpooler.manager: redis unavailable") >= 1, 20, "the manager's line")
        for _ in range(30):
            answer = _answer(daemon, "GET", "/api/v1/status")
            assert answer is not None and answer.status_code == 503
        refused = _refused(acl_server)
        wait_until(lambda: _refused(acl_server) >= refused + 5, 20, "five more retries of the manager")
        log = daemon.log()
        assert log.count("vmpooler.manager: redis unavailable") == 1, log
        assert log.count("vmpooler.api: redis unavailable") == 1, log
        assert reason in log and "Traceback" not in log and PASSWORD not in log, log

        # Granted what it lacked: a change of state, logged once, and the pools fill.
        set_user(acl_server, least_acl())
        wait_until(lambda: ready_count(daemon, "pool1") == 2, 30, f"the pools filled once granted:\n{daemon.log()}")
        assert daemon.log().count("vmpooler.manager: redis available again") == 1, daemon.log()
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
    finally:
        daemon.cleanup()


def test_sigterm_exits_0_while_redis_refuses_everything(acl_server: RedisServer, tmp_path: Path) -> None:
    """Whatever Redis says (here: no permission at all, even at the stop's lease release), the stop is clean
    (report 4: SIGTERM exited 1)."""
    set_user(acl_server, ["-@all", "+hello", "+ping"])
    config = write_config(tmp_path / "vmpooler.yaml", acl_server,
                          redis_lines=f"  url: 'redis://vmpooler:{PASSWORD}@127.0.0.1:{acl_server.port}/0'\n")
    daemon = Daemon(tmp_path, ["--config", str(config)]).start()
    try:
        # The manager has met the refusal (logged as an outage; before issue 20, as a crashed pass).
        wait_until(lambda: "vmpooler.manager: redis unavailable" in daemon.log() or
                   "manager pass failed" in daemon.log(), 20, "the manager's first pass refused")
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
        assert "leases not released" in daemon.log() and "Traceback" not in daemon.log()
    finally:
        daemon.cleanup()


@pytest.mark.parametrize(("password", "expected"), [
    ("wrong-Password-1", "redis refused the credentials of ACL user 'vmpooler': check redis.username and "
                         "redis.password (VMPOOLER_REDIS_USERNAME, VMPOOLER_REDIS_PASSWORD)"),
    (None, "redis requires a password and none is configured: set redis.password"),
])
def test_a_wrong_or_missing_password_names_the_setting(acl_server: RedisServer, tmp_path: Path,
                                                       password: str | None, expected: str) -> None:
    """Issue 20, report 6: a refused password was logged as Redis "unreachable", naming no setting."""
    set_user(acl_server, least_acl())
    with admin(acl_server) as r:
        r.config_set("requirepass", "admin-Secret-2")  # the default user needs a password too now
    try:
        lines = (f"  server: 127.0.0.1\n  port: {acl_server.port}\n" +
                 ("  username: vmpooler\n" f"  password: '{password}'\n" if password else ""))
        config = write_config(tmp_path / "vmpooler.yaml", acl_server, redis_lines=lines)
        daemon = Daemon(tmp_path, ["--config", str(config)]).start()
        try:
            answer = wait_until(lambda: _answer(daemon, "GET", "/api/v1/status"), STARTUP_SECONDS, "the API answering")
            assert answer.status_code == 503 and answer.json()["code"] == "backend_unavailable"
            assert answer.json()["reason"].startswith(expected), answer.json()
            code, verdict = check(config, tmp_path)
            assert code == 1 and str(verdict["reason"]).startswith(expected), verdict
            wait_until(lambda: "vmpooler.manager: redis unavailable" in daemon.log(), 20, "the manager's line")
            assert daemon.stop() == 0, daemon.log()
            log = daemon.log()
            assert expected in log and "unreachable" not in log, log
            assert "wrong-Password-1" not in log and "admin-Secret-2" not in log, log
        finally:
            daemon.cleanup()
        # The CLI says the same, and exits 5 (unauthorized).
        code, out, err = vmp("pools", config=config)
        assert code == 5 and expected in err and "wrong-Password-1" not in err, err
    finally:
        with redis.Redis(port=acl_server.port, password="admin-Secret-2") as r:
            r.config_set("requirepass", "")


def _answer(daemon: Daemon, method: str, path: str) -> httpx.Response | None:
    assert daemon.running(), daemon.log()
    try:
        return httpx.request(method, daemon.url + path, timeout=5)
    except httpx.TransportError:
        return None


def _refused(server: RedisServer) -> int:
    """How many of the user's commands Redis has refused so far (ACL LOG groups repeats in `count`)."""
    return sum(int(entry["count"]) for entry in acl_log(server))  # type: ignore[call-overload]
