"""Issue 12, report 3: with a wrong vCenter password or an unreachable vCenter, `/healthcheck` said healthy
(200) and `vmpoolerd --check` exited 0 while every pool stayed empty, and `vmpooler status` could not say
why. A real `vmpoolerd` on the vCenter simulator, read through its API, `--check` and the `vmpooler`
command on both backends; then the vCenter works again and so does the verdict."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
import schemathesis

from tests.conftest import TEMPLATE, StartSim
from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, check, clean_env, console_script, wait_until
from tests.vcsim.server import VcsimServer

PASSWORD = "the-configured-one"


def write_config(path: Path, redis_url: str, sim: VcsimServer) -> Path:
    path.write_text("\n".join([
        f"redis: {{url: '{redis_url}'}}",
        "config: {manager_loop_seconds: 0.2, manager_lease_seconds: 3, manager_backoff_max: 0.5, vm_checktime: 0}",
        "providers:",
        f"  vsphere: {{server: {sim.host}, port: {sim.port}, username: {sim.user}, password: {PASSWORD}, "
        "insecure: true, timeout: 2, ready_check: hostname}",
        "pools:",
        f"  - {{name: pool1, size: 2, template: {TEMPLATE}, folder: vmpooler/pool1, provider: vsphere}}", ""]))
    return path


def vmpooler(tmp_path: Path, *args: str) -> str:
    """The `vmpooler` command, as a user runs it; its stdout."""
    done = subprocess.run([*console_script("vmpooler"), *args], env=clean_env(tmp_path, HOME=str(tmp_path)),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stderr, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def both_backends(daemon: Daemon, redis_url: str, config: Path) -> list[list[str]]:
    return [["--api", daemon.url], ["--redis", redis_url, "--config", str(config)]]


def healthcheck(daemon: Daemon, status: int) -> dict[str, Any] | None:
    response = daemon.get("/healthcheck")
    return response.json() if response.status_code == status else None


def conforms(daemon: Daemon, *responses: httpx.Response) -> None:
    """Each answer matches the daemon's own OpenAPI document (what schemathesis checks)."""
    document = schemathesis.openapi.from_url(f"{daemon.url}/api/v1/openapi.json")
    for response in responses:
        path = response.url.path
        document[path.removeprefix("/api/v1") if path.startswith("/api/v1/") else path]["GET"].validate_response(
            response)


def test_a_wrong_password_makes_the_pooler_unhealthy_and_says_why(
        tmp_path: Path, redis_url: str, sync_redis: redis.Redis, start_sim: StartSim,
        start_daemon: StartDaemon) -> None:
    sim = start_sim(password="what-vcenter-wants")
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, sim)
    daemon = start_daemon(["--config", str(config)]).wait_serving()

    verdict = wait_until(lambda: healthcheck(daemon, 503), 20, "/healthcheck 503")
    assert verdict["ok"] is False and verdict["code"] == "unhealthy" and verdict["managers"] == 1, verdict
    assert verdict["reason"].startswith("provider vsphere cannot log in since "), verdict
    assert "login refused for user 'user' (InvalidLogin)" in verdict["reason"]
    assert verdict["providers"]["vsphere"]["problem"] == "login"
    assert PASSWORD not in str(verdict) and PASSWORD not in daemon.get("/api/v1/status").text
    conforms(daemon, daemon.get("/healthcheck"), daemon.get("/api/v1/status"))

    code, checked, _ = check(config, tmp_path)
    assert code == 1 and checked["reason"].startswith("provider vsphere cannot log in since "), checked

    for backend in both_backends(daemon, redis_url, config):
        status = vmpooler(tmp_path, *backend, "status")
        assert "provider vsphere  degraded since " in status and ": cannot log in: vsphere vsphere: " in status, status
        assert "pool pool1        short: provider vsphere cannot log in since " in status, status
        pools = vmpooler(tmp_path, *backend, "pools")
        assert "\npool1: provider vsphere cannot log in since " in pools, pools
        assert "(InvalidLogin)" in pools and PASSWORD not in status + pools

    # The vCenter comes back on the same address, now accepting the configured password: the same daemon
    # logs in, fills the pool, and every verdict is healthy again, without a restart.
    port = sim.port
    sim.stop()
    start_sim(port=port, password=PASSWORD)
    verdict = wait_until(lambda: healthcheck(daemon, 200), 30, "/healthcheck 200 again")
    assert verdict["providers"] == {"vsphere": {"ok": True, "state": "ok"}}, verdict
    wait_until(lambda: sync_redis.scard("vmpooler__ready__pool1") == 2, 30, "pool1 filled")
    code, checked, _ = check(config, tmp_path)
    assert (code, checked["reason"]) == (0, "healthy"), checked
    for backend in both_backends(daemon, redis_url, config):
        assert "provider vsphere  ok" in vmpooler(tmp_path, *backend, "status")
        assert vmpooler(tmp_path, *backend, "pools").splitlines() == [
            "POOL   ALIASES  READY  PENDING  RUNNING  SIZE", "pool1           2      0        0        2"]
    assert daemon.stop() == 0, daemon.log()


@contextmanager
def stopped(sim: VcsimServer) -> Iterator[None]:
    """The simulator frozen (SIGSTOP): it accepts connections and answers nothing, as a hung vCenter."""
    assert sim.proc is not None
    sim.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        sim.proc.send_signal(signal.SIGCONT)


def test_an_unreachable_vcenter_makes_the_pooler_unhealthy_until_it_answers(
        tmp_path: Path, redis_url: str, sync_redis: redis.Redis, start_sim: StartSim,
        start_daemon: StartDaemon) -> None:
    sim = start_sim(password=PASSWORD)
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, sim)
    daemon = start_daemon(["--config", str(config)]).wait_serving()
    wait_until(lambda: sync_redis.scard("vmpooler__ready__pool1") == 2 and healthcheck(daemon, 200), 30,
               "pool1 filled and healthy")

    with stopped(sim):
        verdict = wait_until(lambda: healthcheck(daemon, 503), 20, "/healthcheck 503")
        assert verdict["reason"].startswith("provider vsphere is unreachable since "), verdict
        assert verdict["providers"]["vsphere"]["problem"] == "unreachable"
        code, checked, _ = check(config, tmp_path)
        assert code == 1 and checked["reason"].startswith("provider vsphere is unreachable since "), checked
        status = vmpooler(tmp_path, "--api", daemon.url, "status")
        assert "provider vsphere  degraded since " in status and ": is unreachable: vsphere vsphere: " in status, status

    verdict = wait_until(lambda: healthcheck(daemon, 200), 30, "/healthcheck 200 again")
    assert (verdict["reason"], verdict["providers"]["vsphere"]["state"]) == ("healthy", "ok"), verdict
    code, checked, _ = check(config, tmp_path)
    assert code == 0, checked
    assert daemon.stop() == 0, daemon.log()
