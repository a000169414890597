"""What a vmfloaty user does every day (issue 13), over both backends: `checkout pool=N`, `mine`,
`return --all`; token commands against a server without auth; and what is said to whoever holds no token."""

from __future__ import annotations

import json

import redis

from tests.cli.conftest import PASSWORD, Vmp, members, ready
from vmpooler_cli.exit_codes import ExitCode


def test_checkout_takes_vmfloatys_pool_equals_count_form(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1", "a2", "a3")
    ready(sync_redis, "pool2", "b1")
    got = vmp.json("checkout", "pool1=2", "pool2")
    assert [vm["pool"] for vm in got["vms"]] == ["pool1", "pool1", "pool2"]
    assert len(members(sync_redis, "ready", "pool1")) == 1
    for bad in ("pool1=0", "pool1=x", "pool1=", "pool1+pool2=2"):
        assert "expected NAME=COUNT" in vmp.fails(ExitCode.USAGE, "checkout", bad).stderr
    assert members(sync_redis, "ready", "pool1") != set()  # nothing more was taken


def token_for(vmp: Vmp, user: str = "jdoe") -> str:
    return str(vmp.json("token", "create", env={"VMPOOLER_USER": user, "VMPOOLER_PASSWORD": PASSWORD})["token"])


def test_mine_lists_the_vms_of_the_token(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    token = token_for(auth_vmp)
    ready(sync_redis, "pool1", "vm1", "vm2", "vm3")
    mine = ["--token", token, "mine"]
    auth_vmp.fails(ExitCode.USAGE, "mine")  # no token: says to pass one
    assert auth_vmp.json(*mine) == {"vms": []}
    held = {vm["hostname"] for vm in auth_vmp.json("--token", token, "checkout", "pool1=2")["vms"]}
    auth_vmp.ok("checkout", "pool1")  # no token: not mine
    auth_vmp.ok("--token", token, "tag", min(held), "owner=jdoe")
    vms = auth_vmp.json(*mine)["vms"]
    assert {vm["hostname"] for vm in vms} == held
    assert all(vm["template"] == "pool1" and vm["lifetime"] == 2 and 0 <= vm["remaining"] <= 2 for vm in vms)
    table = auth_vmp.ok(*mine).stdout.splitlines()
    assert table[0].split() == ["HOST", "POOL", "LEFT", "TAGS"] and len(table) == 3
    assert any(line.split()[0] == min(held) and line.endswith("owner=jdoe") for line in table)
    auth_vmp.fails(ExitCode.NOT_FOUND, "--token", "nosuchtoken", "mine")


def test_return_all_asks_first(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    token = token_for(auth_vmp)
    ready(sync_redis, "pool1", "vm1", "vm2", "vm3")
    held = {vm["hostname"] for vm in auth_vmp.json("--token", token, "checkout", "pool1=2")["vms"]}
    other = auth_vmp.json("checkout", "pool1")["vms"][0]["hostname"]
    every = ["--token", token, "return", "--all"]
    declined = auth_vmp(*every, input="n\n")
    assert declined.exit_code == ExitCode.ERROR and "nothing was returned" in declined.stderr
    unanswered = auth_vmp(*every, input="")  # no terminal, nothing typed
    assert unanswered.exit_code == ExitCode.USAGE
    assert unanswered.stderr.splitlines()[-1] == ("vmpooler: error: no answer to the question: pass --yes to "
                                                  "return them without asking")
    assert members(sync_redis, "running", "pool1") == held | {other}
    agreed = auth_vmp(*every, input="y\n")
    assert agreed.exit_code == 0 and f"Return 2 VM(s): {', '.join(sorted(held))}?" in agreed.stderr
    assert members(sync_redis, "completed", "pool1") == held
    assert members(sync_redis, "running", "pool1") == {other}
    nothing = auth_vmp(*every, "--yes", "--json")
    assert nothing.exit_code == 0 and json.loads(nothing.stdout) == {"ok": True, "vms": []}
    assert "holds no VMs" in nothing.stderr
    auth_vmp.fails(ExitCode.USAGE, *every, other)  # --all or names, not both
    auth_vmp.fails(ExitCode.USAGE, "return")


def test_token_commands_without_auth_fail_before_any_prompt(vmp: Vmp) -> None:
    """No password in the environment and no input: a prompt would end in "no input" (exit 1)."""
    for command in (["token", "create"], ["token", "list"], ["token", "delete", "abcdefgh"]):
        result = vmp.fails(ExitCode.NOT_FOUND, *command, "--user", "jdoe", input="")
        assert "Password" not in result.stderr and "authentication" in result.stderr, result.stderr


def test_no_token_is_never_called_another_token(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    token = token_for(auth_vmp)
    ready(sync_redis, "pool1", "vm1")
    auth_vmp.ok("--token", token, "checkout", "pool1")
    said = auth_vmp.fails(ExitCode.UNAUTHORIZED, "return", "vm1").stderr
    assert "another token" not in said and "vm1 was checked out with a token, and none was sent" in said, said
    assert "another token" not in auth_vmp.fails(ExitCode.UNAUTHORIZED, "lifetime", "vm1", "3").stderr
    eve = token_for(auth_vmp, "eve")
    assert "another token" in auth_vmp.fails(ExitCode.UNAUTHORIZED, "--token", eve, "return", "vm1").stderr
    assert members(sync_redis, "running", "pool1") == {"vm1"}
