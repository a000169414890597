"""`task_limit` is the pooler's, not each manager's: clones in flight across every manager on one Redis
stay within it (vmpoolerd/manager/clone_slots.py, lua/clone_slot.lua), and a manager killed mid-clone
gives its slots back once its heartbeat is stale."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.manager.procs import CloneWatch, ManagerProcess, process_config, wait_until
from vmpooler_core.keys import Keys

K = Keys()
POOLS = ("a", "b")
LIMIT = 2


def config_file(path: Path, redis_url: str, pools: tuple[str, ...]) -> Path:
    path.write_text(process_config(redis_url, pools, "clone_time: 1\n    boot_time: 0", size=3, task_limit=LIMIT))
    return path


@pytest.mark.slow
def test_task_limit_holds_across_managers_and_a_killed_one_gives_its_slots_back(
        tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    # One manager alone takes both pools and every slot, and is killed with its two clones in flight.
    first = config_file(tmp_path / "both.yaml", redis_url, POOLS)
    with ManagerProcess(first, "victim", tmp_path / "victim.log").start() as victim:
        wait_until(lambda: sync_redis.hget(K.clone_counts(), "victim") == str(LIMIT), 20,
                   f"the first manager holding {LIMIT} slots")
        victim.kill()
    # Two managers, one pool each, both short of 3 VMs: each would clone LIMIT at once on its own.
    # Until the dead one's heartbeat is stale, it still holds every slot; then they share LIMIT.
    with CloneWatch(redis_url, POOLS, dead=["victim"]) as watch, \
            ManagerProcess(config_file(tmp_path / "a.yaml", redis_url, ("a",)), "m-a", tmp_path / "a.log").start(), \
            ManagerProcess(config_file(tmp_path / "b.yaml", redis_url, ("b",)), "m-b", tmp_path / "b.log").start():
        wait_until(lambda: all(sync_redis.scard(K.ready(pool)) == 3 for pool in POOLS), 30, "both pools filled")
    assert watch.peak == LIMIT, f"{watch.peak} clones at once across the managers (task_limit {LIMIT})"
    assert watch.cloners == {"m-a", "m-b"}
    assert sync_redis.hget(K.clone_counts(), "victim") is None  # its slots were given back
    assert sync_redis.get(K.clone_tasks()) == "0"
