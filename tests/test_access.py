"""The access policy of vmpooler_core/access.py on its own, against a real Redis: what a token allows with
auth configured, and that without auth tokens mean nothing. (The API and CLI tests check the same rules
through each front end.)"""

from __future__ import annotations

import pytest
import redis

from tests.conftest import make_config
from vmpooler_core.access import Access
from vmpooler_core.errors import InvalidRequest, NotFound, Unauthorized
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys

K = Keys()
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"
OTHER = "bcdefghijklmnopqrstuvwxyz0123456"
AUTH = make_config("auth: {provider: users, users: {jdoe: x}}\npools:\n  - {name: pool1, size: 1, provider: dummy}\n")
OPEN = make_config("")


@pytest.fixture
def owned(sync_redis: redis.Redis) -> dict[str, str]:
    """vm1, running, checked out with TOKEN (jdoe's); OTHER is a valid token of someone else."""
    for token, user in ((TOKEN, "jdoe"), (OTHER, "eve")):
        sync_redis.hset(K.token(token), mapping={"user": user, "created": "2016-07-25 10:00:00 +0000"})
    vm = {"pool": "pool1", "template": "pool1", "token:token": TOKEN, "token:user": "jdoe"}
    sync_redis.hset(K.vm("vm1"), mapping=vm)
    sync_redis.sadd(K.running("pool1"), "vm1")
    return vm


async def test_queued_work_needs_the_vms_own_token(inventory: Inventory, owned: dict[str, str],
                                                  sync_redis: redis.Redis) -> None:
    access = Access(AUTH, inventory)
    for token in (None, "nosuchtoken", "NOT-A-TOKEN", OTHER):
        with pytest.raises(Unauthorized):
            await access.vm_for_work("vm1", token)
    # The token is checked before the VM's existence is revealed.
    with pytest.raises(Unauthorized):
        await access.vm_for_work("nosuchvm", None)
    with pytest.raises(NotFound):
        await access.vm_for_work("nosuchvm", TOKEN)
    assert await access.vm_for_work("vm1", TOKEN) == owned
    assert sync_redis.hget(K.token(TOKEN), "last"), "a token used is stamped"


async def test_a_lifetime_change_needs_a_valid_token_and_the_owners(inventory: Inventory,
                                                                    owned: dict[str, str]) -> None:
    access = Access(AUTH, inventory)
    with pytest.raises(Unauthorized):
        await access.modification(owned, {"lifetime": 4}, None)
    with pytest.raises(Unauthorized):
        await access.modification(owned, {"lifetime": 4}, "nosuchtoken")
    with pytest.raises(Unauthorized):
        await access.modification(owned, {"lifetime": 4}, OTHER)
    # Unknown arguments are answered before a missing token, a bad token before the body is judged.
    with pytest.raises(InvalidRequest):
        await access.modification(owned, {"lifetime": 4, "colour": "red"}, None)
    with pytest.raises(Unauthorized):
        await access.modification(owned, {"lifetime": "x"}, "nosuchtoken")
    assert (await access.modification(owned, {"lifetime": 4}, TOKEN)).lifetime == 4
    # Tags alone need no token; a VM nobody owns takes a lifetime from any valid token.
    assert (await access.modification(owned, {"tags": {"a": "b"}}, None)).tags == {"a": "b"}
    assert (await access.modification({}, {"lifetime": 3}, OTHER)).lifetime == 3


async def test_without_auth_tokens_mean_nothing(inventory: Inventory, owned: dict[str, str]) -> None:
    access = Access(OPEN, inventory)
    assert access.credited(TOKEN) == "" and Access(AUTH, inventory).credited(TOKEN) == TOKEN
    assert await access.vm_for_work("vm1", None) == owned
    assert (await access.modification(owned, {"lifetime": 4}, "whatever")).lifetime == 4
    for call in (access.create_token("jdoe"), access.tokens_of("jdoe"), access.token(TOKEN, "jdoe"),
                 access.revoke(TOKEN, "jdoe")):
        with pytest.raises(NotFound):
            await call


async def test_tokens_are_read_and_revoked_by_their_owner_only(inventory: Inventory, owned: dict[str, str],
                                                               sync_redis: redis.Redis) -> None:
    access = Access(AUTH, inventory)
    assert set(await access.tokens_of("jdoe")) == {TOKEN}
    with pytest.raises(NotFound):
        await access.tokens_of("nobody")
    assert (await access.token(TOKEN, "jdoe"))["vms"] == {"running": ["vm1"]}
    for call in (access.token(TOKEN, "eve"), access.revoke(TOKEN, "eve")):
        with pytest.raises(Unauthorized):
            await call
    await access.revoke(TOKEN, "jdoe")
    assert not sync_redis.exists(K.token(TOKEN))
    created = await access.create_token("jdoe")
    assert sync_redis.hget(K.token(created), "user") == "jdoe"
