"""The soak run of bench/soak.py, bounded to about a minute: three daemons, 32 clients, daemon kills, a
`kill -9` of Redis and a stopped vCenter, then the audit. `python bench/soak.py --seconds 120` is the same
run, longer; its docstring says what is checked.

With `durability: aof` a checkout is answered only once Redis has fsynced it to its AOF (WAITAOF), so
the Redis killed mid-run must come back with every VM a client was told it holds, even on a disk whose
fsyncs take half a second longer (bench/slow_fsync.c), where Redis answers before it writes (a run with
`durability: none` lost 8 answered checkouts that way, and handed 9 VMs out twice: README). WAITAOF is
Redis 7.2's: the run uses the valkey-server of the embedded defaults (Debian's redis-server here is 7.0)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import SoakSettings, run_soak
from vmpoolerd import embedded

pytestmark = [pytest.mark.slow, pytest.mark.vcsim]


@pytest.mark.timeout(300)  # set-up ~10 s, clients 65 s, their last returns and the settling ~10-60 s
def test_soak_loses_nothing_and_hands_nothing_out_twice(tmp_path: Path) -> None:
    if os.environ.get("VMPOOLER_SKIP_VCSIM") == "1":
        pytest.skip("VMPOOLER_SKIP_VCSIM=1")
    result = run_soak(SoakSettings(seconds=65, workdir=tmp_path, settle_seconds=60, quiet=True, redis_fault="kill",
                                   durability="aof", redis_server=embedded.server_binary(), slow_fsync_ms=500))
    report = result.report()
    print(report)  # the figures, shown with -s or on failure

    assert result.double_handed == 0 and result.handed_twice == 0, report
    assert result.lost == 0, report
    assert result.acknowledged_lost == [] and result.held_at_fault > 0, report  # what Redis kept was checked
    assert result.audit.ok and result.settle_seconds is not None, report
    assert not result.overfilled, report
    assert not result.ledger.anomalies, report  # no 500s, no odd 4xx
    # The run did what it claims: load, every kind of fault, and recovery from each within a bound.
    assert result.ledger.checkouts >= 100 and result.ledger.returns >= 100, report
    kills = result.of_kind("daemon")
    assert len(kills) >= 8 and all(k.serving_at is not None for k in kills), report
    assert len(result.of_kind("redis")) == 1 and len(result.of_kind("vcenter")) == 1, report
    for fault in result.of_kind("redis") + result.of_kind("vcenter"):
        recovery = result.recovery(fault)
        assert recovery is not None and recovery < 20, report
    assert result.refill_seconds is not None and result.refill_seconds < 30, report
    assert result.daemon_exits == [0, 0, 0], report
