"""checkout, return/delete, show, lifetime, tag, snapshot, revert, disk: each over both backends."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from tests.cli.conftest import POOLS_YAML, K, Vmp, members, ready
from vmpooler_cli.exit_codes import ExitCode


def test_checkout_prints_the_fqdn_and_moves_the_vm(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    assert vmp.ok("checkout", "pool1").stdout == "vm1.company.com\n"
    assert members(sync_redis, "ready", "pool1") == set()
    assert members(sync_redis, "running", "pool1") == {"vm1"}


def test_checkout_by_alias_is_keyed_by_the_real_pool(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    assert vmp.json("checkout", "poolone") == {
        "ok": True, "domain": "company.com",
        "vms": [{"pool": "pool1", "hostname": "vm1", "fqdn": "vm1.company.com"}],
    }


def test_checkout_plus_form_names_and_count(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1", "a2", "a3", "a4")
    ready(sync_redis, "pool2", "b1", "b2")
    got = vmp.json("checkout", "pool1+pool1+pool2", "-n", "2")  # 4 of pool1, 2 of pool2
    assert [vm["pool"] for vm in got["vms"]] == ["pool1"] * 4 + ["pool2"] * 2
    assert {vm["hostname"] for vm in got["vms"]} == {"a1", "a2", "a3", "a4", "b1", "b2"}
    assert members(sync_redis, "ready", "pool1") == members(sync_redis, "ready", "pool2") == set()


def test_checkout_of_several_arguments_prints_one_host_a_line(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "a1")
    ready(sync_redis, "pool2", "b1")
    assert vmp.ok("checkout", "pool1", "pool2").stdout == "a1.company.com\nb1.company.com\n"


def test_unknown_pool_checks_out_nothing(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    result = vmp.fails(ExitCode.NOT_FOUND, "checkout", "pool1+poolpoolpool")
    assert "poolpoolpool" in result.stderr and result.stdout == ""
    assert members(sync_redis, "ready", "pool1") == {"vm1"}


def test_short_pool_checks_out_nothing(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "vm2")
    vmp.fails(ExitCode.NO_CAPACITY, "checkout", "pool1", "pool2", "--json")
    assert members(sync_redis, "ready", "pool1") == {"vm1", "vm2"}
    assert members(sync_redis, "running", "pool1") == set()


def test_bad_checkout_arguments_are_usage_errors(vmp: Vmp) -> None:
    assert vmp("checkout", "pool1", "-n", "0").exit_code == ExitCode.USAGE
    assert vmp("checkout").exit_code == ExitCode.USAGE
    vmp.fails(ExitCode.USAGE, "checkout", "pool1++pool2")


def test_return_and_its_delete_alias(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "vm2")
    vmp.ok("checkout", "pool1", "-n", "2")
    assert vmp.ok("return", "vm1.company.com").stdout == "vm1.company.com returned\n"
    assert vmp.json("delete", "vm2") == {"ok": True, "vms": [{"hostname": "vm2", "ok": True}]}
    assert members(sync_redis, "completed", "pool1") == {"vm1", "vm2"}
    assert members(sync_redis, "running", "pool1") == set()


def test_return_tries_every_host_and_exits_with_the_first_failure(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "idle")
    vmp.ok("checkout", "pool1")  # one of the two; return whichever it was, plus a ready one and a ghost
    taken = next(iter(members(sync_redis, "running", "pool1")))
    still = next(iter(members(sync_redis, "ready", "pool1")))
    result = vmp("return", "nosuchvm", taken, still, "--json")
    assert result.exit_code == ExitCode.NOT_FOUND
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [(vm["hostname"], vm["ok"]) for vm in doc["vms"]] == [("nosuchvm", False), (taken, True), (still, False)]
    assert all(vm["error"] for vm in doc["vms"] if not vm["ok"])
    assert result.stderr.count("vmpooler: error: ") == 2
    assert members(sync_redis, "completed", "pool1") == {taken}


def test_show_gives_the_vm_document(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    vmp.ok("checkout", "pool1")
    sync_redis.hset(K.vm("vm1"), mapping={"tag:owner": "jdoe", "snapshot:snap1": "2016-07-25 10:00:00 +0000",
                                          "disk": "+8gb:+16gb", "lifetime": "12"})
    doc = vmp.json("show", "vm1.company.com")
    assert isinstance(doc.pop("running"), float) and isinstance(doc.pop("remaining"), float)
    assert doc == {"hostname": "vm1", "fqdn": "vm1.company.com", "domain": "company.com", "template": "pool1",
                   "state": "running", "lifetime": 12, "tags": {"owner": "jdoe"}, "snapshots": ["snap1"],
                   "disk": ["+8gb", "+16gb"], "ip": ""}
    text = vmp.ok("show", "vm1").stdout
    assert text.splitlines()[0] == "vm1.company.com"
    for expected in ("template   pool1", "state      running", "lifetime   12 h", "owner=jdoe", "snap1",
                     "+8gb, +16gb", "h left)"):
        assert expected in text


def test_show_of_a_ready_vm_has_no_running_time(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool2", "vm2")
    doc = vmp.json("show", "vm2")
    assert (doc["state"], doc["running"], doc["remaining"], doc["lifetime"]) == ("ready", None, None, 24)


def test_show_unknown_vm(vmp: Vmp) -> None:
    vmp.fails(ExitCode.NOT_FOUND, "show", "nosuchvm")


def test_lifetime_is_stored(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    assert vmp.json("lifetime", "vm1", "48") == {"ok": True, "hostname": "vm1", "lifetime": 48}
    assert sync_redis.hget(K.vm("vm1"), "lifetime") == "48"
    assert vmp.ok("lifetime", "vm1", "12").stdout == "vm1: lifetime 12 h\n"
    assert vmp("lifetime", "vm1", "0").exit_code == ExitCode.USAGE
    vmp.fails(ExitCode.NOT_FOUND, "lifetime", "nosuchvm", "2")


def test_tags_are_stored(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    got = vmp.json("tag", "vm1", "owner=jdoe", "url=https://ci/job/1?a=b")
    assert got == {"ok": True, "hostname": "vm1", "tags": {"owner": "jdoe", "url": "https://ci/job/1?a=b"}}
    assert sync_redis.hget(K.vm("vm1"), "tag:url") == "https://ci/job/1?a=b"
    assert vmp("tag", "vm1", "novalue").exit_code == ExitCode.USAGE
    vmp.fails(ExitCode.USAGE, "tag", "vm1", "bad name=x")  # the server's rule on tag names


def test_snapshot_and_revert_are_queued(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    doc = vmp.json("snapshot", "vm1")
    name = doc["snapshot"]
    assert doc == {"ok": True, "hostname": "vm1", "snapshot": name} and len(name) == 32
    assert sync_redis.smembers(K.snapshot_tasks()) == {f"vm1:{name}"}
    # Not taken yet (the manager records the time when it is): nothing to revert to.
    vmp.fails(ExitCode.NOT_FOUND, "revert", "vm1", name)
    sync_redis.hset(K.vm("vm1"), f"snapshot:{name}", "2016-07-25 10:00:00 +0000")
    assert vmp.ok("revert", "vm1", name).stdout == f"vm1: revert to {name} queued\n"
    assert sync_redis.smembers(K.revert_tasks()) == {f"vm1:{name}"}
    vmp.fails(ExitCode.NOT_FOUND, "snapshot", "nosuchvm")


def test_disk_is_queued(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    assert vmp.json("disk", "vm1", "8") == {"ok": True, "hostname": "vm1", "disk": "+8gb"}
    assert sync_redis.smembers(K.disk_tasks()) == {"vm1:8"}
    assert vmp.ok("disk", "vm1", "16").stdout == "vm1: +16gb disk queued\n"
    assert vmp("disk", "vm1", "0").exit_code == ExitCode.USAGE
    assert vmp("disk", "vm1", "4096").exit_code == ExitCode.USAGE
    vmp.fails(ExitCode.NOT_FOUND, "disk", "nosuchvm", "8")


LIMITED_YAML = POOLS_YAML.replace("  domain: company.com\n", "  domain: company.com\n  max_lifetime_upper_limit: 48\n")


@pytest.mark.parametrize("kind", ["redis", "api"])
def test_lifetime_bounds_are_named(make_vmp: Callable[[str, str], Vmp], kind: str, sync_redis: redis.Redis) -> None:
    vmp = make_vmp(kind, LIMITED_YAML)
    ready(sync_redis, "pool1", "vm1")
    assert "limit of 48 hours" in vmp.fails(ExitCode.USAGE, "lifetime", "vm1", "49").stderr
    assert "cannot be negative (-5)" in vmp.fails(ExitCode.USAGE, "lifetime", "vm1", "-5").stderr
    assert "at least 1 hour" in vmp.fails(ExitCode.USAGE, "lifetime", "vm1", "0").stderr
    assert "whole number" in vmp.fails(ExitCode.USAGE, "lifetime", "vm1", "2.5").stderr
    assert sync_redis.hget(K.vm("vm1"), "lifetime") is None
    vmp.ok("lifetime", "vm1", "48")
    assert sync_redis.hget(K.vm("vm1"), "lifetime") == "48"


def test_show_gives_the_recorded_ip_else_dns(vmp: Vmp, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1", "localhost")
    sync_redis.hset(K.vm("vm1"), "ip", "192.0.2.7")  # as the manager records the provider's guest IP
    assert vmp.json("show", "vm1")["ip"] == "192.0.2.7"
    assert "  ip         192.0.2.7" in vmp.ok("show", "vm1").stdout
    assert vmp.json("show", "localhost")["ip"] == "127.0.0.1"  # nothing recorded: DNS
