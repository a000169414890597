"""`vmpoolerd --forget-vanished POOL`: the operator's confirmation that VMs which vanished at once are gone
(the manager's side: tests/manager/test_vcsim_faults.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from vmpooler_core.keys import Keys

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(f"redis: {{url: '{redis_url}'}}\nproviders: {{dummy: {{}}}}\n"
                      "pools:\n  - {name: pool1, size: 1, provider: dummy}\n")
    return subprocess.run([sys.executable, "-m", "vmpoolerd", "--config", str(config), *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)


def test_the_confirmation_is_written_and_expires(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    done = run(tmp_path, redis_url, "--forget-vanished", "pool1")
    assert done.returncode == 0 and "pool pool1:" in done.stdout, done
    key = Keys().forget_vanished("pool1")
    assert sync_redis.get(key) and 0 < sync_redis.ttl(key) <= 600


def test_an_unknown_pool_is_refused_in_one_line(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    done = run(tmp_path, redis_url, "--forget-vanished", "nope")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "vmpoolerd: error: --forget-vanished: no pool 'nope' in the configuration"], done
    assert not sync_redis.keys("*forget_vanished*")
