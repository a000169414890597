"""`vmpooler checkout --ondemand` and `vmpooler request ID` over our real API, with a real manager process
cloning on the dummy provider: Ctrl-C leaves the request running and says its id, `request ID` resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import redis

from tests.cli.conftest import Vmp
from tests.manager.procs import REPO, ManagerProcess, wait_until
from vmpooler_cli.exit_codes import ExitCode
from vmpooler_core.keys import Keys

K = Keys()


def config_text(redis_url: str) -> str:
    return f"""
:redis:
  url: {redis_url}
:config:
  domain: example.com
  task_limit: 4
  vm_checktime: 0
  manager_loop_seconds: 0.2
  max_ondemand_instances_per_request: 5
:providers:
  :dummy: {{clone_time: 0, boot_time: 0}}
:pools:
  - {{name: pool1, size: 0, alias: [linux]}}
  - {{name: pool2, size: 0}}
"""


def test_ondemand_checkout_ctrl_c_and_resume(tmp_path: Path, redis_url: str, sync_redis: redis.Redis,
                                             make_vmp: Callable[[str, str], Vmp]) -> None:
    text = config_text(redis_url)
    vmp = make_vmp("api", text)
    # No manager yet: the request waits. Ctrl-C stops the waiting and says how to resume.
    command = [sys.executable, "-m", "vmpooler_cli", *vmp.base, "checkout", "--ondemand", "pool1", "-n", "2"]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    said = proc.stderr.readline()  # "vmpooler: request <id>: ...", once the server has it
    request_id = said.split()[2].rstrip(":")
    assert sync_redis.hget(K.ondemand_request(request_id), "requested") == "pool1:pool1:2", said
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == ExitCode.INTERRUPTED and out == ""
    assert f"`vmpooler request {request_id}` waits for it again" in err
    assert not sync_redis.hget(K.ondemand_request(request_id), "status"), "the request goes on"
    (tmp_path / "vmpooler.yaml").write_text(text)
    with ManagerProcess(tmp_path / "vmpooler.yaml", "m1", tmp_path / "m1.log").start() as manager:
        resumed = vmp.ok("request", request_id)
        hosts = resumed.stdout.split()
        assert len(hosts) == 2 and all(host.endswith(".example.com") for host in hosts)
        assert {host.split(".")[0] for host in hosts} == sync_redis.smembers(K.running("pool1"))
        # Ready already: at once, the same hosts.
        assert vmp.ok("request", request_id).stdout.split() == hosts
        # checkout --ondemand from submit to hostnames, as JSON.
        got = vmp("--json", "checkout", "--ondemand", "linux+pool2")
        assert got.exit_code == 0, got.stderr
        doc = json.loads(got.stdout)
        assert doc["ok"] is True and sorted(vm["pool"] for vm in doc["vms"]) == ["linux", "pool2"]
        assert all(vm["fqdn"] == f"{vm['hostname']}.example.com" for vm in doc["vms"])
        assert got.stderr.startswith(f"vmpooler: request {doc['request_id']}: 2 VM(s) being cloned")
        # Cancelled: its VMs are given back (and destroyed by the manager).
        assert vmp.json("request", doc["request_id"], "--cancel") == {"ok": True, "request_id": doc["request_id"],
                                                                      "deleted": True}
        assert vmp.ok("request", doc["request_id"], "--cancel").stdout.strip().endswith("was deleted before")
        vmp.fails(ExitCode.NOT_FOUND, "request", doc["request_id"])
        wait_until(lambda: not sync_redis.scard(K.running("pool2")) and not sync_redis.scard(K.completed("pool2")),
                   10, "the cancelled request's VMs destroyed")
        assert manager.alive(), manager.log()


def test_ondemand_errors(redis_url: str, make_vmp: Callable[[str, str], Vmp]) -> None:
    vmp = make_vmp("api", config_text(redis_url))
    assert "unknown pool or alias: nope" in vmp.fails(ExitCode.NOT_FOUND, "checkout", "--ondemand", "nope").stderr
    over = vmp.fails(ExitCode.USAGE, "checkout", "--ondemand", "pool1", "-n", "6").stderr
    assert "exceeds the maximum 5" in over
    assert "no request found" in vmp.fails(ExitCode.NOT_FOUND, "request", "nosuch").stderr
    direct = make_vmp("redis", config_text(redis_url))
    assert "--api" in direct.fails(ExitCode.USAGE, "checkout", "--ondemand", "pool1").stderr


def test_ondemand_on_a_server_without_it_says_it_does_not_offer_it(redis_url: str, sync_redis: redis.Redis,
                                                                    make_vmp: Callable[[str, str], Vmp]) -> None:
    """API v1 (the URL names it: the original before 2.0 has nothing else) has no on-demand routes: the CLI
    says the server does not offer them, never "unknown pool", and nothing is asked for."""
    vmp = make_vmp("api-v1", config_text(redis_url))
    result = vmp.fails(ExitCode.ERROR, "checkout", "--ondemand", "pool1")
    assert "does not offer on-demand VMs (API v1" in result.stderr, result.stderr
    assert not sync_redis.zcard(K.ondemand_new())
