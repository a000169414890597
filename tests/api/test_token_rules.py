"""Who may return, change and tag a VM checked out with a token, and how many tags a VM takes: through the
API on a real Redis. A revoked token returns and changes nothing, also when it is revoked between the
API's check and its write (the write's own script checks again: lua/write.lua, return.lua)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.api.conftest import PASSWORDS, TOKEN, MakeClient, TestClient
from tests.api.helpers import K, basic, expect_json, expect_unauthorized, make_token, members, running, vm
from vmpooler_core import clock
from vmpooler_core.inventory import Inventory

OTHER = "zyxwvutsrqponmlkjihgfedcba543210"
JDOE = basic("jdoe", PASSWORDS["jdoe"])


@pytest.fixture
def tokens(r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    make_token(r, OTHER, "eve")


def tags_of(r: redis.Redis, host: str) -> dict[str, str]:
    return {k[4:]: v for k, v in vm(r, host).items() if k.startswith("tag:")}


def nothing_queued(r: redis.Redis) -> bool:
    return not any(r.exists(key) for key in (K.disk_tasks(), K.snapshot_tasks(), K.revert_tasks()))


# Revoked tokens ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("tokens")
def test_a_revoked_token_returns_and_changes_nothing(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    r.hset(K.vm("vm1"), "snapshot:snap1", "2016-07-25 11:00:00 +0000")
    expect_json(auth_client.delete(f"/api/v1/token/{TOKEN}", headers=JDOE), True, 200)
    mine = {"X-AUTH-TOKEN": TOKEN}
    answer = auth_client.delete("/api/v1/vm/vm1", headers=mine)
    expect_unauthorized(answer)
    assert "revoked" in answer.json()["reason"]
    expect_unauthorized(auth_client.put("/api/v1/vm/vm1", json={"lifetime": 4}, headers=mine))
    for path in ("/api/v1/vm/vm1/disk/8", "/api/v1/vm/vm1/snapshot", "/api/v1/vm/vm1/snapshot/snap1"):
        expect_unauthorized(auth_client.post(path, headers=mine))
    assert members(r, "running", "pool1") == {"vm1"} and members(r, "completed", "pool1") == set()
    assert "lifetime" not in vm(r, "vm1") and nothing_queued(r)


class Meddling(Inventory):
    """Another client acts just before each write the API makes: `meddle(redis)` runs first."""

    meddle: Any = None

    async def _write(self, *commands: tuple[str, ...], **options: Any) -> list[Any]:
        if self.meddle is not None:
            await self.meddle(self.redis)
        return await super()._write(*commands, **options)


@pytest.fixture
def meddling(auth_client: TestClient) -> Iterator[Meddling]:
    services = auth_client.app.state.services  # type: ignore[attr-defined]
    inventory = Meddling(services.inventory.redis, services.inventory.keys)
    services.access.inventory = inventory
    yield inventory


async def revoke(client: Any) -> None:
    await client.delete(K.token(TOKEN))


async def hand_to_other(client: Any) -> None:
    await client.hset(K.vm("vm1"), mapping={"token:token": OTHER, "token:user": "eve"})


@pytest.mark.usefixtures("tokens")
@pytest.mark.parametrize("meddle", [revoke, hand_to_other], ids=["revoked", "handed-to-another-token"])
def test_a_change_made_after_the_check_no_longer_holds_writes_nothing(
        auth_client: TestClient, meddling: Meddling, r: redis.Redis, meddle: Any) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    r.hset(K.vm("vm1"), "snapshot:snap1", "2016-07-25 11:00:00 +0000")
    meddling.meddle = meddle
    mine = {"X-AUTH-TOKEN": TOKEN}
    requests = [("PUT", "/api/v1/vm/vm1", {"lifetime": 4, "tags": {"a": "b"}})] + [
        ("POST", path, None) for path in ("/api/v1/vm/vm1/disk/8", "/api/v1/vm/vm1/snapshot",
                                          "/api/v1/vm/vm1/snapshot/snap1")]
    for method, path, body in requests:
        # As it was when the API checked: the token exists and the VM is its own; then the meddling.
        make_token(r, TOKEN, "jdoe")
        r.hset(K.vm("vm1"), mapping={"token:token": TOKEN, "token:user": "jdoe"})
        expect_unauthorized(auth_client.request(method, path, json=body, headers=mine))
    assert "lifetime" not in vm(r, "vm1") and tags_of(r, "vm1") == {} and nothing_queued(r)
    assert not r.exists(K.tag_stats(clock.today()))


# Who may tag -------------------------------------------------------------------------------------

@pytest.mark.usefixtures("tokens")
def test_anyone_may_tag_a_token_vm_by_default_as_in_the_original(auth_client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"tags": {"project": "x"}}), True, 200)
    expect_json(auth_client.put("/api/v1/vm/vm1", json={"tags": {"build": "7"}}, headers={"X-AUTH-TOKEN": OTHER}),
                True, 200)
    assert tags_of(r, "vm1") == {"project": "x", "build": "7"}


@pytest.mark.usefixtures("tokens")
def test_tag_owned_vms_owner_needs_the_vms_own_token(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1", token=TOKEN)
    running(r, "pool1", "vm2")
    with make_client(auth=True, app="  tag_owned_vms: owner") as client:
        for headers in ({}, {"X-AUTH-TOKEN": OTHER}, {"X-AUTH-TOKEN": "nosuchtoken"}):
            expect_unauthorized(client.put("/api/v1/vm/vm1", json={"tags": {"project": "x"}}, headers=headers))
        assert tags_of(r, "vm1") == {}
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"project": "x"}}, headers={"X-AUTH-TOKEN": TOKEN}),
                    True, 200)
        assert tags_of(r, "vm1") == {"project": "x"}
        # A VM checked out without a token is still anyone's to tag.
        expect_json(client.put("/api/v1/vm/vm2", json={"tags": {"project": "y"}}), True, 200)


@pytest.mark.usefixtures("tokens")
def test_tag_owned_vms_owner_holds_when_the_vm_is_taken_between_check_and_write(
        make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    with make_client(auth=True, app="  tag_owned_vms: owner") as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        inventory = Meddling(services.inventory.redis, services.inventory.keys)
        inventory.meddle = hand_to_other
        services.access.inventory = inventory
        expect_unauthorized(client.put("/api/v1/vm/vm1", json={"tags": {"project": "x"}}))
    assert tags_of(r, "vm1") == {}


# Tag limits --------------------------------------------------------------------------------------

def test_tag_limits_are_400_and_store_nothing(client: TestClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    for tags in ({f"t{n}": "v" for n in range(20_000)},  # the report's 1.35 MB hash
                 {f"t{n}": "v" for n in range(101)},
                 {"n" * 51: "v"},
                 {"name": "v" * 256}):
        body = expect_json(client.put("/api/v1/vm/vm1", json={"tags": tags}), False, 400)
        assert body["code"] == "invalid_request"
    assert tags_of(r, "vm1") == {} and not r.exists(K.tag_stats(clock.today()))
    expect_json(client.put("/api/v1/vm/vm1", json={"tags": {f"t{n}": "v" for n in range(100)}}), True, 200)
    expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"n" * 50: "v" * 255}}), False, 400)  # a 101st tag
    assert len(tags_of(r, "vm1")) == 100


def test_configured_tag_limits_count_the_tags_a_vm_already_has(make_client: MakeClient, r: redis.Redis) -> None:
    running(r, "pool1", "vm1")
    app = "  max_tags_per_vm: 3\n  max_tag_name_length: 5\n  max_tag_value_length: 4"
    with make_client(app=app) as client:
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"sixsix": "v"}}), False, 400)
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"a": "fives"}}), False, 400)
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"a": "1", "b": "2"}}), True, 200)
        # Two more would make four: refused whole, atomically with the count (write.lua).
        answer = expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"c": "3", "d": "4"}}), False, 400)
        assert "max_tags_per_vm" in answer["reason"]
        # Tags the VM has already are changed, not counted again.
        expect_json(client.put("/api/v1/vm/vm1", json={"tags": {"a": "9", "b": "9", "c": "3"}}), True, 200)
    assert tags_of(r, "vm1") == {"a": "9", "b": "9", "c": "3"}
    assert set(r.hkeys(K.tag_stats(clock.today()))) == {"vm1:a", "vm1:b", "vm1:c"}
