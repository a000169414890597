"""Real manager processes (dummy provider): kill -9 at an awkward moment and restart; two managers, one
killed, the other taking its pools over without ever over-filling them."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.conftest import make_config
from tests.manager.conftest import MakeManager, states
from tests.manager.procs import FillWatch, ManagerProcess, process_config, wait_until
from tests.processes import STARTUP_SECONDS
from vmpooler_core.keys import Keys

K = Keys()
POOLS = ("p1", "p2", "p3")


def config_text(redis_url: str, dummy: str, size: int = 4) -> str:
    return process_config(redis_url, POOLS, dummy, size=size)


def provider_vms(sync_redis: redis.Redis, pool: str) -> set[str]:
    return set(sync_redis.hkeys(K.dummy_folder("dummy", pool)))


def known(sync_redis: redis.Redis, pool: str) -> set[str]:
    return set().union(*states(sync_redis, pool).values())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "vmpooler.yaml"


@pytest.mark.slow
async def test_kill_9_mid_clone_then_restart(config_file: Path, tmp_path: Path, redis_url: str,
                                             sync_redis: redis.Redis, make_manager: MakeManager) -> None:
    config_file.write_text(config_text(redis_url, "clone_time: 0.6\n    boot_time: 0"))
    with ManagerProcess(config_file, "m1", tmp_path / "m1.log").start() as manager:
        wait_until(lambda: sync_redis.get(K.clone_tasks()) == "3", STARTUP_SECONDS, "three clones in flight")
        manager.kill()
    # Its clones died with it: pending entries with no VM behind them.
    dangling = set().union(*(states(sync_redis, p)["pending"] - provider_vms(sync_redis, p) for p in POOLS))
    assert dangling
    # The restart (same id): one pass, and Redis and the provider agree again.
    restarted = await make_manager(make_config(config_file.read_text()), manager_id="m1")
    await restarted.run_once()
    for pool in POOLS:
        in_flight = restarted.cloner.hosts(pool)
        assert provider_vms(sync_redis, pool) <= known(sync_redis, pool)
        assert known(sync_redis, pool) - in_flight <= provider_vms(sync_redis, pool)
    assert not dangling & set().union(*(known(sync_redis, p) for p in POOLS))
    await restarted.drain()


@pytest.mark.slow
async def test_kill_9_mid_destroy_then_restart(config_file: Path, tmp_path: Path, redis_url: str,
                                               sync_redis: redis.Redis, make_manager: MakeManager) -> None:
    config_file.write_text(config_text(redis_url, "clone_time: 0\n    boot_time: 0\n    destroy_time: 5"))
    with ManagerProcess(config_file, "m1", tmp_path / "m1.log").start() as manager:
        wait_until(lambda: all(sync_redis.scard(K.ready(p)) == 4 for p in POOLS), STARTUP_SECONDS, "pools filled")
        doomed = sorted(sync_redis.smembers(K.ready("p1")))[:2]
        for host in doomed:
            sync_redis.smove(K.ready("p1"), K.completed("p1"), host)
        wait_until(lambda: sync_redis.scard(K.ready("p1")) == 4, 10, "replacements made (destroys running)")
        manager.kill()
    assert set(doomed) <= states(sync_redis, "p1")["completed"], "completed until destroyed (A7.7)"
    assert set(doomed) <= provider_vms(sync_redis, "p1")
    quick = config_file.read_text().replace("destroy_time: 5", "destroy_time: 0")
    restarted = await make_manager(make_config(quick), manager_id="m1")
    await restarted.run_once()
    await restarted.drain()
    assert not set(doomed) & (provider_vms(sync_redis, "p1") | known(sync_redis, "p1"))
    assert provider_vms(sync_redis, "p1") == known(sync_redis, "p1")


@pytest.mark.slow
def test_two_managers_one_killed(config_file: Path, tmp_path: Path, redis_url: str,
                                 sync_redis: redis.Redis) -> None:
    config_file.write_text(config_text(redis_url, "clone_time: 0.2\n    boot_time: 0"))
    with FillWatch(redis_url, POOLS) as watch, \
            ManagerProcess(config_file, "first", tmp_path / "first.log").start() as first:
        wait_until(lambda: all(sync_redis.get(K.lease(p)) == "first" for p in POOLS), STARTUP_SECONDS,
                   "first holds all")
        with ManagerProcess(config_file, "second", tmp_path / "second.log").start() as second:
            wait_until(lambda: all(sync_redis.scard(K.ready(p)) == 4 for p in POOLS), 15, "pools filled")
            wait_until(lambda: "second" in sync_redis.zrange(K.heartbeats(), 0, -1), STARTUP_SECONDS,
                       "second running")
            # Take VMs from every pool, so that whoever works them has to clone, then kill the worker.
            for pool in POOLS:
                for host in list(sync_redis.smembers(K.ready(pool)))[:2]:
                    sync_redis.smove(K.ready(pool), K.running(pool), host)
            first.kill()
            took = wait_until(lambda: all(sync_redis.get(K.lease(p)) == "second" for p in POOLS), 10,
                              "second takes over")
            # The 2 s lease, then the next 0.2 s pass of a manager process on a loaded machine: 2 s of room.
            assert took <= 2 + 2, f"take-over took {took:.1f}s with 2 s leases"
            wait_until(lambda: all(sync_redis.scard(K.ready(p)) == 4 for p in POOLS), 15, "pools refilled")
            assert second.alive(), second.log()
            assert second.stop() == 0
        for pool in POOLS:
            assert provider_vms(sync_redis, pool) == known(sync_redis, pool)
    assert watch.peak <= 4, f"a pool held {watch.peak} ready + pending VMs (size 4)"
