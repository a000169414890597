"""The audit trail from the `vmpooler` command: over the Redis backend the core writes the same lines and
history as for the API, the client named cli:<local user>; `vmpooler show` prints the history."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import AUTH_YAML, PASSWORD, POOLS_YAML, Vmp, ready
from vmpooler_cli.backends.redis import local_user

JDOE = {"VMPOOLER_USER": "jdoe", "VMPOOLER_PASSWORD": PASSWORD}


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="vmpooler.audit")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "vmpooler.audit"]


def client_of(vmp: Vmp) -> str:
    return f"cli:{local_user()}" if vmp.kind == "redis" else "127.0.0.1"


def test_checkout_change_and_return_are_logged(vmp: Vmp, sync_redis: redis.Redis,
                                               audit_lines: Callable[[], list[str]]) -> None:
    ready(sync_redis, "pool1", "vm1")
    vmp.ok("checkout", "pool1")
    vmp.ok("tag", "vm1", "build=42")
    vmp.ok("return", "vm1")
    found = audit_lines()
    client = re.escape(client_of(vmp))
    expected = [rf"checkout pool=pool1 vm=vm1 user=- client={client} request=\w+",
                rf"tags pool=pool1 vm=vm1 user=- client={client} request=\w+ tags=build",
                rf"return pool=pool1 vm=vm1 user=- client={client} request=\w+"]
    assert len(found) == 3 and all(re.fullmatch(p, line) for p, line in zip(expected, found, strict=True)), found
    assert len({line.split("request=")[1].split()[0] for line in found}) == 3  # one id per operation


def test_the_tokens_user_is_logged_never_the_token(auth_vmp: Vmp, sync_redis: redis.Redis,
                                                   audit_lines: Callable[[], list[str]]) -> None:
    token = auth_vmp.json("token", "create", env=JDOE)["token"]
    ready(sync_redis, "pool1", "vm1")
    auth_vmp.ok("--token", token, "checkout", "pool1")
    auth_vmp.ok("--token", token, "lifetime", "vm1", "5")
    auth_vmp.ok("--token", token, "return", "vm1")
    auth_vmp.ok("token", "delete", token, env=JDOE)
    found = audit_lines()
    assert [line.split()[0] for line in found] == ["token-create", "checkout", "lifetime", "return", "token-revoke"]
    assert all(f"user=jdoe client={client_of(auth_vmp)} " in line for line in found), found
    assert not any(token in line or PASSWORD in line for line in found)


def test_show_prints_the_history(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    vmp.ok("checkout", "pool1")
    vmp.ok("return", "vm1")
    text = vmp.ok("show", "vm1").stdout
    history = text.split("  history\n")[1].splitlines()
    # Over the API the addresses are left out (anyone may read a VM's document); on Redis they are there.
    source = f" from {re.escape(client_of(vmp))}" if vmp.kind == "redis" else ""
    assert re.fullmatch(rf"    \S+ \S+ \+0000  checkout {source} request \w+", history[0]), history
    assert re.fullmatch(rf"    \S+ \S+ \+0000  return   {source} request \w+", history[1]), history
    assert "history" not in vmp.json("show", "vm1")  # the documented --json shape is unchanged...
    entries = vmp.json("show", "--history", "vm1")["history"]  # ...and has it on request
    assert [(e["event"], e["user"], e.get("client")) for e in entries] == [
        ("checkout", "-", client_of(vmp) if vmp.kind == "redis" else None),
        ("return", "-", client_of(vmp) if vmp.kind == "redis" else None)]


def test_show_of_a_vm_without_history_prints_none(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    assert "history" not in vmp.ok("show", "vm1").stdout
    assert vmp.json("show", "--history", "vm1")["history"] == []


def test_the_redis_backend_appends_its_lines_to_the_daemons_log_file(
        make_vmp: Callable[[str, str], Vmp], sync_redis: redis.Redis, tmp_path: Path) -> None:
    logfile = tmp_path / "vmpoolerd.log"
    logfile.write_text("2024-05-01 10:00:00,000 INFO vmpooler.daemon: a line of the daemon\n")
    vmp = make_vmp("redis", POOLS_YAML.replace(":config:\n", f":config:\n  logfile: '{logfile}'\n"))
    ready(sync_redis, "pool1", "vm1")
    vmp.ok("checkout", "pool1")
    lines = logfile.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith("a line of the daemon")
    assert re.fullmatch(rf"\S+ \S+ INFO vmpooler\.audit: checkout pool=pool1 vm=vm1 user=- "
                        rf"client=cli:{re.escape(local_user())} request=\w+", lines[1]), lines[1]
    # A log file that is not there (a config copied to another machine) is not created.
    missing = tmp_path / "elsewhere" / "vmpoolerd.log"
    other = make_vmp("redis", AUTH_YAML.replace(":config:\n", f":config:\n  logfile: '{missing}'\n"))
    ready(sync_redis, "pool1", "vm2")
    other.ok("checkout", "pool1")
    assert not missing.parent.exists()
