"""token create/list/delete, and what a token allows, over both backends with auth configured; and
`hash-password`, for the users auth provider."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from click.testing import CliRunner

from tests.cli.conftest import PASSWORD, K, Vmp, members, ready
from vmpooler_cli.app import cli
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_core import auth, config_loader

JDOE = {"VMPOOLER_USER": "jdoe", "VMPOOLER_PASSWORD": PASSWORD}


def test_token_lifecycle(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    created = auth_vmp.json("token", "create", env=JDOE)
    token = created["token"]
    assert created == {"ok": True, "user": "jdoe", "token": token} and len(token) == 32
    assert sync_redis.hget(K.token(token), "user") == "jdoe"
    second = auth_vmp.ok("token", "create", "--user", "jdoe", env={"VMPOOLER_PASSWORD": PASSWORD}).stdout.strip()
    listed = auth_vmp.json("token", "list", env=JDOE)
    assert listed["user"] == "jdoe"
    assert {t["token"] for t in listed["tokens"]} == {token, second}
    assert all(t["last"] == "never" and t["created"] for t in listed["tokens"])
    table = auth_vmp.ok("token", "list", env=JDOE).stdout.splitlines()
    assert table[0].split() == ["TOKEN", "CREATED", "LAST"] and len(table) == 3
    assert auth_vmp.json("token", "delete", token, env=JDOE) == {"ok": True, "token": token}
    assert not sync_redis.exists(K.token(token))
    auth_vmp.fails(ExitCode.NOT_FOUND, "token", "delete", token, env=JDOE)


def test_tokens_belong_to_their_user(auth_vmp: Vmp) -> None:
    token = auth_vmp.json("token", "create", env=JDOE)["token"]
    eve = {"VMPOOLER_USER": "eve", "VMPOOLER_PASSWORD": PASSWORD}
    auth_vmp.fails(ExitCode.NOT_FOUND, "token", "list", env=eve)  # eve has none
    auth_vmp.fails(ExitCode.UNAUTHORIZED, "token", "delete", token, env=eve)


def test_checkout_with_a_token_owns_the_vm(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    token = auth_vmp.json("token", "create", env=JDOE)["token"]
    ready(sync_redis, "pool1", "vm1", "vm2")
    auth_vmp.ok("checkout", "pool1", env={"VMPOOLER_TOKEN": token})
    owned = next(iter(members(sync_redis, "running", "pool1")))
    assert sync_redis.hget(K.vm(owned), "token:user") == "jdoe"
    assert sync_redis.hget(K.vm(owned), "lifetime") == "2"  # vm_lifetime_auth
    # Only with its token: changed, given a snapshot, returned.
    auth_vmp.fails(ExitCode.UNAUTHORIZED, "lifetime", owned, "5")
    auth_vmp.fails(ExitCode.UNAUTHORIZED, "snapshot", owned)
    auth_vmp.fails(ExitCode.UNAUTHORIZED, "return", owned)
    auth_vmp.ok("--token", token, "lifetime", owned, "5")
    assert sync_redis.hget(K.vm(owned), "lifetime") == "5"
    auth_vmp.ok("--token", token, "disk", owned, "8")
    auth_vmp.ok("--token", token, "return", owned)
    assert members(sync_redis, "completed", "pool1") == {owned}


def test_a_bad_token_takes_nothing(auth_vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    auth_vmp.fails(ExitCode.UNAUTHORIZED, "--token", "nosuchtoken", "checkout", "pool1")
    assert members(sync_redis, "ready", "pool1") == {"vm1"}


def test_password_is_prompted_over_the_api_only(make_vmp: object, sync_redis: redis.Redis) -> None:
    from tests.cli.conftest import AUTH_YAML

    api = make_vmp("api", AUTH_YAML)  # type: ignore[operator]
    result = api("token", "create", "--user", "jdoe", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.stderr
    assert "Password for jdoe" in result.stderr and len(result.stdout.strip()) == 32
    wrong = api("token", "create", "--user", "jdoe", input="wrong\n")
    assert wrong.exit_code == ExitCode.UNAUTHORIZED and wrong.stdout == ""
    assert wrong.stderr.splitlines()[-1] == "vmpooler: error: the user name or password is wrong"
    # No terminal and no input: a clear error, not a hang.
    assert api("token", "create", "--user", "jdoe", input="").exit_code == ExitCode.ERROR
    direct = make_vmp("redis", AUTH_YAML)  # type: ignore[operator]
    result = direct("token", "create", "--user", "jdoe")
    assert result.exit_code == 0 and "Password" not in result.stderr


def test_tokens_need_auth_configured(vmp: Vmp) -> None:
    vmp.fails(ExitCode.NOT_FOUND, "token", "create", env=JDOE)
    vmp.fails(ExitCode.NOT_FOUND, "token", "list", env=JDOE)


def test_hash_password_makes_a_users_file_line(tmp_path: Path) -> None:
    """Its line in a `users_file`, loaded as the daemon loads it, lets that password in and no other."""
    made = CliRunner().invoke(cli, ["hash-password", "jdoe"], input="correct horse\n")
    assert made.exit_code == 0, made.stderr
    (tmp_path / "users.txt").write_text(made.stdout)
    (tmp_path / "v.yaml").write_text(":auth:\n  provider: users\n  users_file: users.txt\n:providers: {dummy: {}}\n"
                                     ":pools:\n  - name: pool1\n    size: 1\n")
    config = config_loader.load(tmp_path / "v.yaml", env={})
    checker = auth.from_settings(config.auth)
    assert checker is not None
    assert checker.check("jdoe", "correct horse").user == "jdoe"
    assert checker.check("jdoe", "correct horsе").user is None
    shown = json.loads(CliRunner().invoke(cli, ["hash-password", "--json"], input="pw\n").stdout)
    assert shown["ok"] is True and shown["user"] is None and shown["hash"].startswith("pbkdf2_sha256$")
    for args, given in ((["hash-password"], "\n"), (["hash-password", "a:b"], "pw\n")):
        refused = CliRunner().invoke(cli, args, input=given)
        assert refused.exit_code == ExitCode.USAGE and refused.stdout == "", refused.stderr
