"""End to end: `python -m vmpoolerd api` as a subprocess on a free port against a real Redis, over real
HTTP; and the command line's exit codes for a bad configuration and a busy port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.helpers import K, members, ready
from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vmpoolerd", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def wait_until_serving(proc: subprocess.Popen[str], url: str, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url + "/api/v1/status", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"vmpoolerd did not serve {url} within {seconds} s")


@dataclass
class Served:
    url: str
    stderr: str = ""  # once stopped
    returncode: int | None = None


@contextmanager
def serving_api(config: Path, log_level: str = "warning") -> Iterator[Served]:
    """`vmpoolerd api` on a free port for the block; then SIGTERM, with its exit code and stderr kept."""
    port = free_port()
    proc = start(["api", "--config", str(config), "--port", str(port), "--log-level", log_level])
    served = Served(f"http://127.0.0.1:{port}")
    try:
        wait_until_serving(proc, served.url)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        _, served.stderr = proc.communicate(timeout=15)
        served.returncode = proc.returncode


def write_config(path: Path, redis_url: str, extra: str = "") -> Path:
    path.write_text(f"redis: {{url: '{redis_url}'}}\nconfig:\n  domain: company.com\n{extra}"
                    "providers: {dummy: {}}\npools:\n  - {name: pool1, alias: [poolone], size: 2}\n")
    return path


@pytest.fixture
def daemon(tmp_path: Path, redis_url: str) -> Iterator[str]:
    with serving_api(write_config(tmp_path / "vmpooler.yaml", redis_url)) as served:
        yield served.url
    assert served.returncode == 0, served.stderr  # a clean stop on SIGTERM


def test_checkout_and_return_over_http(daemon: str, sync_redis: redis.Redis) -> None:
    ready(sync_redis, "pool1", "vm1")
    with httpx.Client(base_url=daemon) as http:  # one keep-alive connection for all requests
        response = http.post("/api/v1/vm", json={"poolone": "1"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == {"ok": True, "pool1": {"hostname": "vm1"}, "domain": "company.com"}
        assert http.get("/vm/vm1.company.com").json()["vm1"]["state"] == "running"
        assert http.post("/vm/pool1").status_code == 503
        assert http.delete("/api/v1/vm/vm1").json() == {"ok": True}
        assert members(sync_redis, "completed", "pool1") == {"vm1"}


def test_errors_over_http_are_json(daemon: str, sync_redis: redis.Redis) -> None:
    with httpx.Client(base_url=daemon) as http:
        for method, path, body, status in [("POST", "/api/v1/vm", b"{oops", 400), ("GET", "/nope", b"", 404),
                                           ("PATCH", "/api/v1/status", b"", 405),
                                           ("POST", "/api/v1/vm", b" " * (1 << 20) + b"{}", 413)]:
            response = http.request(method, path, content=body)
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json" and response.json()["ok"] is False
    assert not sync_redis.exists(K.running("pool1"))


def test_config_port_and_environment_variable(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, f"  port: {port}\n  bind: 127.0.0.1\n")
    proc = start(["api"], env={"VMPOOLER_CONFIG_FILE": str(config)})
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_bad_config_is_one_line_and_a_named_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("config:\n  port: 4567\npools:\n  - name: pool1\n    size: many\n")
    proc = start(["--config", str(config)])
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 78  # ExitCode.CONFIG (sysexits EX_CONFIG)
    assert stderr.strip().splitlines() == [f"vmpoolerd: error: {config}:5: pools[0].size: must be a whole number "
                                           f"(got 'many')"]
    proc = start(["--config", str(config), "--debug"])
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "Traceback" in stderr and "ConfigError" in stderr


def test_missing_config_file(tmp_path: Path) -> None:
    proc = start(["--config", str(tmp_path / "nope.yaml")])
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 78 and "nope.yaml" in stderr and "Traceback" not in stderr


def test_busy_port_is_one_line_and_a_named_exit_code(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url)
    with __import__("socket").create_server(("127.0.0.1", 0)) as taken:
        proc = start(["api", "--config", str(config), "--port", str(taken.getsockname()[1])])
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 69  # ExitCode.UNAVAILABLE
    assert "cannot listen on 127.0.0.1" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("args", [["--port", "70000"], ["--log-level", "loud"], ["nosuchrole"]])
def test_bad_command_lines_are_usage_errors(args: list[str]) -> None:
    proc = start(args)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "usage: vmpoolerd" in stderr


DUMMY_POOLS = ("providers:\n  dummy: {clone_time: 0, boot_time: 0}\n"
               "pools:\n  - {name: pool1, alias: [poolone], size: 2}\n")


def test_default_role_runs_the_manager_and_the_api(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(f"redis: {{url: '{redis_url}'}}\nconfig:\n  manager_loop_seconds: 0.2\n{DUMMY_POOLS}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(["--config", str(config), "--port", str(port)])
    try:
        wait_until_serving(proc, url)
        deadline = time.monotonic() + 30
        while httpx.get(url + "/api/v1/status").json()["pools"]["pool1"]["ready"] < 2:
            assert time.monotonic() < deadline, "the manager did not fill pool1"
            time.sleep(0.1)
        host = httpx.post(url + "/api/v1/vm/poolone").json()["pool1"]["hostname"]
        assert httpx.delete(f"{url}/api/v1/vm/{host}").json() == {"ok": True}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr


def test_manager_role_alone(tmp_path: Path, redis_url: str, sync_redis: redis.Redis) -> None:
    config = tmp_path / "vmpooler.yaml"
    port = free_port()  # nothing may listen there: the manager role serves no HTTP
    config.write_text(f"redis: {{url: '{redis_url}'}}\nconfig:\n  manager_loop_seconds: 0.2\n  port: {port}\n"
                      f"{DUMMY_POOLS}")
    proc = start(["manager", "--config", str(config)])
    try:
        deadline = time.monotonic() + 30
        while sync_redis.scard(K.ready("pool1")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the manager did not fill pool1"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
