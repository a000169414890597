"""`vmpooler ssh HOST|POOL`, against a stand-in `ssh` on PATH: a real executable that records the
arguments it was run with and exits 42, so the test sees what ssh would be asked to do and that its exit
code is the command's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import Vmp, members, ready
from vmpooler_cli.exit_codes import ExitCode


@pytest.fixture
def fake_ssh(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(environment with the stand-in first on PATH, the file its argv is written to, one per line)."""
    bin_dir, argv = tmp_path / "bin", tmp_path / "ssh-argv"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{argv}'\nexit 42\n")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}, argv


def test_ssh_to_a_pool_checks_one_out_first(vmp: Vmp, sync_redis: redis.Redis,
                                            fake_ssh: tuple[dict[str, str], Path]) -> None:
    env, argv = fake_ssh
    ready(sync_redis, "pool1", "vm1")
    result = vmp("ssh", "poolone", "uptime", "-v", env=env)  # an alias; what follows is ssh's
    assert result.exit_code == 42
    assert argv.read_text().splitlines() == ["root@vm1.company.com", "uptime", "-v"]
    assert "checked out vm1.company.com (pool1)" in result.stderr and "vmpooler return" in result.stderr
    assert members(sync_redis, "running", "pool1") == {"vm1"}


def test_ssh_to_a_host(vmp: Vmp, sync_redis: redis.Redis, fake_ssh: tuple[dict[str, str], Path]) -> None:
    env, argv = fake_ssh
    ready(sync_redis, "pool2", "vm2")
    assert vmp("ssh", "-l", "admin", "vm2.company.com", env=env).exit_code == 42
    assert argv.read_text().splitlines() == ["admin@vm2.company.com"]
    assert members(sync_redis, "ready", "pool2") == {"vm2"}  # a host is not checked out
    argv.unlink()
    vmp.fails(ExitCode.NOT_FOUND, "ssh", "nosuchvm", env=env)
    assert not argv.exists()


def test_ssh_needs_an_ssh(vmp: Vmp, tmp_path: Path) -> None:
    assert "no ssh on PATH" in vmp.fails(ExitCode.ERROR, "ssh", "vm1", env={"PATH": str(tmp_path)}).stderr
