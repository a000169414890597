"""pools, status and watch (piped), over both backends; and the two backends side by side."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from tests.api.helpers import report_health
from tests.cli.conftest import POOLS_YAML, K, Vmp, ready
from tests.redis_server import free_port
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_core import clock
from vmpooler_core.demand import DEMAND, Target
from vmpooler_core.provider import ProviderError
from vmpoolerd.manager.health_report import CLONE_FAILURES, HealthReport


def _stock(r: redis.Redis) -> None:
    ready(r, "pool1", "a1", "a2", "a3")
    r.sadd(K.pending("pool1"), "p1")
    r.sadd(K.running("pool2"), "r1", "r2")


def test_pools_json(vmp: Vmp, sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    assert vmp.json("pools") == {"pools": [
        {"name": "pool1", "aliases": ["poolone"], "ready": 3, "pending": 1, "running": 0, "size": 5},
        {"name": "pool2", "aliases": [], "ready": 0, "pending": 0, "running": 2, "size": 10},
    ]}


def test_json_works_before_the_command_too(vmp: Vmp, sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    result = vmp.ok("--json", "pools")
    assert json.loads(result.stdout) == vmp.json("pools")


def test_pools_table_when_piped(vmp: Vmp, sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    assert vmp.ok("pools").stdout.splitlines() == [
        "POOL   ALIASES  READY  PENDING  RUNNING  SIZE",
        "pool1  poolone  3      1        0        5",
        "pool2           0      0        2        10",
    ]


def test_status(vmp_v1: Vmp, sync_redis: redis.Redis) -> None:
    vmp = vmp_v1
    _stock(sync_redis)
    doc = vmp.json("status")
    assert doc["capacity"] == {"current": 3, "total": 15, "percent": 20.0}
    assert doc["queue"]["ready"] == 3 and doc["queue"]["running"] == 2 and doc["queue"]["pending"] == 1
    assert doc["status"]["ok"] is False and doc["status"]["empty"] == ["pool2"]
    assert doc["pools"]["pool1"] == {"ready": 3, "running": 0, "pending": 1, "max": 5, "alias": ["poolone"]}
    text = vmp.ok("status").stdout
    assert text.startswith("Found 1 empty pools. Empty: pool2\n")
    assert "capacity  3/15 ready (20.0%)" in text
    assert "pending 1 (cloning 0, booting 1), ready 3, running 2" in text


def test_watch_prints_one_json_line_per_refresh(vmp: Vmp, sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    lines = vmp.ok("watch", "--count", "2", "--interval", "0.1", "--json").stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        doc = json.loads(line)
        assert doc["time"].endswith("Z")
        assert [(p["name"], p["ready"]) for p in doc["pools"]] == [("pool1", 3), ("pool2", 0)]


def test_watch_piped_prints_tables(vmp: Vmp, sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    out = vmp.ok("watch", "--count", "2", "--interval", "0.1").stdout
    assert out.count("POOL   ALIASES  READY") == 2 and out.count("pool1  poolone  3") == 2


def test_watch_waits_out_an_outage_from_the_first_refresh() -> None:
    """Piped: each failed refresh is a line saying so (here JSON's "error") and a note on stderr; --count
    ends it with the last refresh's exit code. (On a terminal, and its end: test_terminal.py.)"""
    dead = Vmp("api", ["--api", f"http://127.0.0.1:{free_port()}"])
    result = dead("watch", "--count", "2", "--interval", "0.1", "--json")
    assert result.exit_code == ExitCode.UNREACHABLE
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and all(line["pools"] == [] and "cannot reach" in line["error"] for line in lines)
    assert result.stderr.count("vmpooler: cannot reach") == 2


def test_summary(vmp: Vmp, sync_redis: redis.Redis) -> None:
    today = clock.today()
    sync_redis.hset(K.boot_stats(today), mapping={"pool1:a1": "12.5", "pool1:a2": "7.5", "pool2:b1": "4"})
    sync_redis.hset(K.clone_stats(today), mapping={"pool1:a1": "30"})
    sync_redis.hset(K.tag_stats(today), mapping={"a1:owner": "jdoe", "a2:owner": "jdoe", "b1:owner": "eve"})
    doc = vmp.json("summary")
    assert doc["boot"]["count"]["total"] == 3 and doc["tag"] == {"owner": {"jdoe": 2, "eve": 1, "total": 3}}
    text = [" ".join(row.split()) for row in vmp.ok("summary", "--from", today, "--to", today).stdout.splitlines()]
    assert text[0] == f"Summary {today} to {today}"
    for line in ("boots 3, average 8.0 s (min 4.0, max 12.5)", "clones 1, average 30.0 s",
                 "boots pool1 2, average 10.0 s", "tag owner eve=1, jdoe=2"):
        assert any(row.startswith(line) for row in text), (line, text)
    assert "YYYY-MM-DD" in vmp.fails(ExitCode.USAGE, "summary", "--from", "yesterday").stderr


def test_watch_bad_interval_is_a_usage_error(vmp: Vmp) -> None:
    assert vmp("watch", "--interval", "0").exit_code == ExitCode.USAGE


def test_both_backends_give_the_same_answers(both: tuple[Vmp, Vmp], sync_redis: redis.Redis) -> None:
    """The same data read through Redis and through the API: identical output, byte for byte, except
    the figures that move with the clock (running time, uptime)."""
    direct, api = both
    _stock(sync_redis)
    ready(sync_redis, "pool2", "b1")
    direct.ok("checkout", "pool2")
    sync_redis.hset(K.vm("b1"), mapping={"tag:owner": "jdoe", "disk": "+8gb"})
    for args in (["pools"], ["pools", "--json"]):
        assert direct.ok(*args).stdout == api.ok(*args).stdout
    statuses = [d.json("status") for d in both]
    for doc in statuses:
        doc["status"].pop("uptime")
    assert statuses[0] == statuses[1]
    shows = [d.json("show", "b1.company.com") for d in both]
    for doc in shows:
        doc.pop("running"), doc.pop("remaining")
    assert shows[0] == shows[1]
    # Errors too: the same exit code for the same mistake.
    for args, code in ((["checkout", "nosuch"], ExitCode.NOT_FOUND), (["checkout", "pool2"], ExitCode.NO_CAPACITY),
                       (["show", "nosuch"], ExitCode.NOT_FOUND), (["return", "a1"], ExitCode.NOT_FOUND),
                       (["tag", "b1", "a b=c"], ExitCode.USAGE)):
        assert direct(*args).exit_code == api(*args).exit_code == code, args



def clones_failing_in_pool2(report: HealthReport) -> None:
    report.pool_read("pool1")
    for _ in range(CLONE_FAILURES):
        report.clone_failed("pool2", ProviderError("dummy: template pool2 is gone"))


def test_pools_and_status_say_why_a_pool_is_short(vmp: Vmp, sync_redis: redis.Redis, redis_url: str) -> None:
    _stock(sync_redis)
    report_health(redis_url, POOLS_YAML, clones_failing_in_pool2)
    doc = vmp.json("status")
    since = doc["providers"]["dummy"]["pools"]["pool2"]["since"]
    why = f"provider dummy fails to clone since {since}: dummy: template pool2 is gone"
    assert doc["providers"] == {"dummy": {"ok": False, "state": "degraded", "pools": {"pool2": {
        "problem": "clone", "reason": "fails to clone: dummy: template pool2 is gone", "since": since}}}}
    assert doc["pools"]["pool2"]["reason"] == why and "reason" not in doc["pools"]["pool1"]
    pools = vmp.json("pools")["pools"]
    assert pools[1] == {"name": "pool2", "aliases": [], "ready": 0, "pending": 0, "running": 2, "size": 10,
                        "reason": why}
    assert "reason" not in pools[0]
    assert vmp.ok("pools").stdout.splitlines() == [
        "POOL   ALIASES  READY  PENDING  RUNNING  SIZE",
        "pool1  poolone  3      1        0        5",
        "pool2           0      0        2        10",
        "",
        f"pool2: {why}",
    ]
    text = vmp.ok("status").stdout
    assert f"  provider dummy  degraded; pool pool2 since {since}: fails to clone: dummy: template pool2 is gone\n" \
        in text, text
    assert text.endswith(f"  pool pool2      short: {why}\n"), text


@pytest.mark.parametrize("kind", ["redis", "api"])
def test_pools_show_the_target_of_a_pool_sized_to_demand(kind: str, make_vmp: Callable[..., Vmp],
                                                         sync_redis: redis.Redis) -> None:
    _stock(sync_redis)
    vmp = make_vmp(kind, POOLS_YAML.replace("    size: 5\n", "    size: 5\n    max_size: 9\n"))
    target = Target(7, DEMAND, 5, 9, 3.2, 6, 95.0, 1_750_000_000.0)
    sync_redis.hset(K.sizing(), "pool1", target.to_json())  # as the manager holding pool1 writes it
    pools = vmp.json("pools")["pools"]
    assert pools[0]["target"] == {"size": 7, "why": target.why} and "target" not in pools[1]
    assert vmp.ok("pools").stdout.splitlines() == [
        "POOL   ALIASES  READY  PENDING  RUNNING  SIZE",
        "pool1  poolone  3      1        0        5",
        "pool2           0      0        2        10",
        "",
        "pool1: target 7, sized to demand: demand 3.2 VMs/min, up to 6 within one refill of 95 s",
    ]
