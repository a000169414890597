"""The audit trail in the core: a log line per checkout, return and change naming the user, never the
token; each VM's history, written in the same script as its state change, capped, and expiring with
the VM's hash."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from tests.conftest import make_config
from vmpooler_core import audit, vms
from vmpooler_core.access import Access
from vmpooler_core.audit import Caller
from vmpooler_core.checkout import Checkout
from vmpooler_core.config import Config
from vmpooler_core.errors import ConfigError, NoCapacity, NotCheckedOut, Unauthorized, UnknownPool
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import HISTORY_LENGTH, Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.request import from_mapping, from_path

K = Keys()
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"
CALLER = Caller("10.0.0.5", "req-1")
AUTH_YAML = """
:config: {vm_lifetime_auth: 2}
:auth: {provider: users, users: {jdoe: x}}
:providers: {dummy: {}}
:pools:
  - {name: pool1, alias: [poolone], size: 5}
  - {name: pool2, size: 5}
"""


@pytest.fixture
def auth_config() -> Config:
    return make_config(AUTH_YAML)


@pytest.fixture
def audit_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="vmpooler.audit")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "vmpooler.audit" and (level is None or r.levelno == level)]


def ready(r: redis.Redis, pool: str, *hosts: str) -> None:
    for host in hosts:
        r.sadd(K.ready(pool), host)
        r.hset(K.vm(host), mapping={"template": pool, "pool": pool})


def history(r: redis.Redis, host: str) -> list[dict[str, str]]:
    return [audit.read_entry(str(raw)) for raw in r.lrange(K.history(host), 0, -1)]


async def test_checkout_and_return_are_logged_with_the_tokens_user(
        auth_config: Config, inventory: Inventory, sync_redis: redis.Redis,
        audit_log: pytest.LogCaptureFixture) -> None:
    ready(sync_redis, "pool1", "vm1")
    ready(sync_redis, "pool2", "vm2")
    sync_redis.hset(K.token(TOKEN), mapping={"user": "jdoe", "created": "2016-07-25 10:43:32 -0500"})
    co = Checkout(auth_config, inventory, NullMetrics())
    await co.take(from_mapping({"poolone": 1, "pool2": 1}), token=TOKEN, caller=CALLER)
    await co.give_back("vm1", TOKEN, caller=Caller("10.0.0.6", "req-2"))
    assert lines(audit_log, logging.INFO) == [
        "checkout pool=pool1 vm=vm1 user=jdoe client=10.0.0.5 request=req-1",
        "checkout pool=pool2 vm=vm2 user=jdoe client=10.0.0.5 request=req-1",
        "return pool=pool1 vm=vm1 user=jdoe client=10.0.0.6 request=req-2"]
    assert TOKEN not in audit_log.text


async def test_without_a_token_the_user_is_a_dash(config: Config, inventory: Inventory,
                                                  sync_redis: redis.Redis,
                                                  audit_log: pytest.LogCaptureFixture) -> None:
    ready(sync_redis, "pool1", "vm1")
    co = Checkout(config, inventory, NullMetrics())
    await co.take(from_path("pool1"), caller=CALLER)
    await co.give_back("vm1")
    assert lines(audit_log) == ["checkout pool=pool1 vm=vm1 user=- client=10.0.0.5 request=req-1",
                                "return pool=pool1 vm=vm1 user=- client=- request=-"]


async def test_refused_attempts_unauthorized_at_info_the_rest_at_debug(
        auth_config: Config, inventory: Inventory, sync_redis: redis.Redis,
        audit_log: pytest.LogCaptureFixture) -> None:
    ready(sync_redis, "pool1", "vm1")
    co = Checkout(auth_config, inventory, NullMetrics())
    with pytest.raises(Unauthorized):
        await co.take(from_path("pool1"), token="madeuptoken", caller=CALLER)
    with pytest.raises(UnknownPool):
        await co.take(from_path("pool1+nosuchpool"), caller=CALLER)
    with pytest.raises(NoCapacity):
        await co.take(from_mapping({"pool2": 1}), caller=CALLER)
    info = lines(audit_log, logging.INFO)
    assert len(info) == 1 and info[0].startswith("checkout refused pool=pool1 vm=- user=- client=10.0.0.5")
    assert "code=unauthorized" in info[0] and "madeuptoken" not in audit_log.text
    debug = lines(audit_log, logging.DEBUG)
    assert [line.split(" code=")[1].split()[0] for line in debug] == ["unknown_pool", "no_capacity"]
    assert "pool=pool1+nosuchpool" in debug[0] and "pool=pool2" in debug[1]


async def test_changes_and_queued_work_are_logged(auth_config: Config, inventory: Inventory,
                                                  sync_redis: redis.Redis,
                                                  audit_log: pytest.LogCaptureFixture) -> None:
    ready(sync_redis, "pool1", "vm1")
    sync_redis.hset(K.token(TOKEN), mapping={"user": "jdoe", "created": "x"})
    await Checkout(auth_config, inventory, NullMetrics()).take(from_path("pool1"), token=TOKEN)
    access = Access(auth_config, inventory)
    vm, _ = await vms.load(inventory, "vm1")
    audit_log.clear()
    await access.change("vm1", vm, {"lifetime": 4, "tags": {"build": "42"}}, TOKEN, CALLER)
    await access.change("vm1", vm, {"tags": {"owner": "x"}}, TOKEN, CALLER)  # the VM's token: its user
    await access.disk("vm1", "8", TOKEN, CALLER)
    name = await access.snapshot("vm1", TOKEN, CALLER)
    sync_redis.hset(K.vm("vm1"), f"snapshot:{name}", "2016-07-25 10:43:32 +0000")
    await access.revert("vm1", name, TOKEN, CALLER)
    with pytest.raises(Unauthorized):
        await access.change("vm1", vm, {"lifetime": 9}, None, CALLER)
    who = "user=jdoe client=10.0.0.5 request=req-1"
    assert lines(audit_log) == [
        f"lifetime pool=pool1 vm=vm1 {who} hours=4",
        f"tags pool=pool1 vm=vm1 {who} tags=build",
        f"tags pool=pool1 vm=vm1 {who} tags=owner",
        f"disk pool=pool1 vm=vm1 {who} disk=+8gb",
        f"snapshot pool=pool1 vm=vm1 {who} snapshot={name}",
        f"revert pool=pool1 vm=vm1 {who} snapshot={name}",
        'change refused pool=pool1 vm=vm1 user=- client=10.0.0.5 request=req-1 code=unauthorized '
        'reason="changing a lifetime needs a token"']
    assert TOKEN not in audit_log.text


async def test_token_creation_and_revocation_are_logged_without_the_token(
        auth_config: Config, inventory: Inventory, audit_log: pytest.LogCaptureFixture) -> None:
    access = Access(auth_config, inventory)
    token = await access.create_token("jdoe", CALLER)
    with pytest.raises(Unauthorized):
        await access.revoke(token, "eve", CALLER)  # not hers
    await access.revoke(token, "jdoe", CALLER)
    found = lines(audit_log)
    assert found[0] == "token-create pool=- vm=- user=jdoe client=10.0.0.5 request=req-1"
    assert found[1] == "token-revoke refused pool=- vm=- user=eve client=10.0.0.5 request=req-1 code=unauthorized"
    assert found[2].startswith("token-revoke pool=- vm=- user=jdoe client=10.0.0.5 request=req-1 created=")
    assert token not in audit_log.text


def test_values_a_client_chose_cannot_forge_fields_or_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmpooler.audit")
    audit.record("checkout", Caller('1.2.3.4\ncheckout pool=x vm=y user=root', "r"), pool="p", host="h")
    (line,) = lines(caplog)
    assert "\n" not in line and line.endswith('client="1.2.3.4\\ncheckout pool=x vm=y user=root" request=r')


async def test_the_history_is_written_with_the_checkout_and_return(
        auth_config: Config, inventory: Inventory, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    sync_redis.hset(K.token(TOKEN), mapping={"user": "jdoe", "created": "x"})
    co = Checkout(auth_config, inventory, NullMetrics())
    await co.take(from_path("pool1"), token=TOKEN, caller=CALLER)
    await co.give_back("vm1", TOKEN, caller=Caller("cli:jdoe", "req-2"))
    entries = history(sync_redis, "vm1")
    assert [{k: v for k, v in e.items() if k != "at"} for e in entries] == [
        {"event": "checkout", "user": "jdoe", "client": "10.0.0.5", "request": "req-1"},
        {"event": "return", "user": "jdoe", "client": "cli:jdoe", "request": "req-2"}]
    assert entries[0]["at"] == sync_redis.hget(K.vm("vm1"), "checkout")
    assert list(entries[0]) == ["at", "event", "user", "client", "request"]
    assert not any(TOKEN in str(raw) for raw in sync_redis.lrange(K.history("vm1"), 0, -1))


async def test_a_checkout_that_fails_writes_no_history(config: Config, inventory: Inventory,
                                                       sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "vm2")
    co = Checkout(config, inventory, NullMetrics())
    with pytest.raises(NoCapacity):  # vm1 and vm2 are taken, then pool2 is short: both go back
        await co.take(from_mapping({"pool1": 2, "pool2": 1}))
    with pytest.raises(NoCapacity):
        await co.take(from_mapping({"pool1": 3}))
    assert sync_redis.scard(K.ready("pool1")) == 2
    assert not sync_redis.exists(K.history("vm1"), K.history("vm2"))
    with pytest.raises(NotCheckedOut):  # nor does a return of a VM never checked out
        await co.give_back("vm1")
    assert not sync_redis.exists(K.history("vm1"))


async def test_the_history_is_capped(config: Config, inventory: Inventory, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    co = Checkout(config, inventory, NullMetrics())
    for n in range(HISTORY_LENGTH):  # two entries a round
        await co.take(from_path("pool1"), caller=Caller("c", f"r{n}"))
        await co.give_back("vm1", caller=Caller("c", f"r{n}"))
        await inventory.move("pool1", "vm1", "completed", "ready")
    entries = history(sync_redis, "vm1")
    assert len(entries) == HISTORY_LENGTH == 50
    half = HISTORY_LENGTH // 2
    assert [e["request"] for e in entries[::2]] == [f"r{n}" for n in range(half, HISTORY_LENGTH)]  # newest kept


async def test_the_history_expires_with_the_vm(config: Config, inventory: Inventory, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    co = Checkout(config, inventory, NullMetrics())
    await co.take(from_path("pool1"))
    assert sync_redis.ttl(K.history("vm1")) == -1  # no expiry while the VM lives
    entry = audit.entry("destroyed", "2024-05-01 10:00:00 +0000", manager="m1")
    await inventory.forget("pool1", "vm1", destroyed=True, history=entry)
    assert 0 < sync_redis.ttl(K.history("vm1")) <= inventory.data_ttl
    assert sync_redis.ttl(K.history("vm1")) == sync_redis.ttl(K.vm("vm1"))
    assert [e["event"] for e in history(sync_redis, "vm1")] == ["checkout", "destroyed"]
    # Forgotten again (nothing left to leave): no second entry.
    await inventory.forget("pool1", "vm1", destroyed=True, history=entry)
    assert len(history(sync_redis, "vm1")) == 2


async def test_a_move_writes_its_entry_only_when_it_moves(inventory: Inventory, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    entry = audit.entry("completed", "2024-05-01 10:00:00 +0000", manager="m1", detail="failed its check")
    assert await inventory.move("pool1", "vm1", "ready", "completed", {"x": 1}, history=entry)
    assert not await inventory.move("pool1", "vm1", "ready", "completed", history=entry)  # not there anymore
    assert history(sync_redis, "vm1") == [json.loads(entry)]
    assert sync_redis.hget(K.vm("vm1"), "x") == "1"


async def test_a_new_vm_of_an_old_name_starts_a_new_history(inventory: Inventory, sync_redis: redis.Redis) -> None:
    sync_redis.rpush(K.history("vm1"), audit.entry("checkout", "2016-01-01 00:00:00 +0000", user="old"))
    sync_redis.set(K.lease("pool1"), "m1")
    first = audit.entry("clone", "2024-05-01 10:00:00 +0000", manager="m1", detail="template t")
    await inventory.reserve_clone("pool1", "vm1", "t", size=2, owner="m1", history=first)
    assert history(sync_redis, "vm1") == [json.loads(first)]


def test_the_access_log_setting() -> None:
    assert make_config("providers: {dummy: {}}\npools: []\n").app.access_log is False
    assert make_config("config: {access_log: true}\nproviders: {dummy: {}}\npools: []\n").app.access_log is True
    with pytest.raises(ConfigError, match=r"test\.yaml:1: config\.access_log: must be true or false"):
        make_config("config: {access_log: sometimes}\nproviders: {dummy: {}}\npools: []\n")
    with pytest.raises(ConfigError, match="did you mean `access_log`"):
        make_config("config: {acess_log: true}\nproviders: {dummy: {}}\npools: []\n")
