"""Real `vmpoolerd` processes for the daemon tests: the installed console script on a free port, its
output in a log file (never a pipe that could fill up), waited for by polling with a bound, and always
stopped, even when a test fails half-way."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.processes import STARTUP_SECONDS
from tests.redis_server import free_port
from vmpooler_core.keys import Keys

REPO = Path(__file__).resolve().parents[2]
K = Keys()
_STARTS = itertools.count(1)


def console_script(name: str) -> list[str]:
    """The installed entry point (pip install -e . puts it beside this Python), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    assert found, f"the {name} console script is not installed: run `pip install -e .` (scripts/test does)"
    return [found]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a process under test: nothing VMPOOLER_* from the machine, a private state
    directory (so a daemon that fell back on the embedded defaults could never touch the real one), and
    this Python's bin directory first on PATH (where the console scripts are)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPOOLER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("XDG_STATE_HOME", str(tmp / "state"))
    env.update(extra)
    return env


def wait_until(condition: Callable[[], Any], seconds: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition()` until it returns something true, and return that; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {seconds} s")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def write_config(path: Path, redis_url: str, *, pools: str, app: str = "", extra: str = "") -> Path:
    """A config file: `pools` is the YAML list body, `app` lines of the `config:` section, `extra` any
    other top-level sections (the dummy provider with its defaults unless they have `providers:`)."""
    providers = "" if "providers:" in extra else "providers: {dummy: {}}\n"
    path.write_text(f"redis: {{url: '{redis_url}'}}\nconfig:\n  domain: company.com\n{app}{extra}{providers}"
                    f"pools:\n{pools}")
    return path


def check(config: Path, tmp_path: Path, timeout: float = 30) -> tuple[int, dict[str, Any], float]:
    """`vmpoolerd --check --config FILE`: exit code, the verdict it printed, seconds it took."""
    started = time.monotonic()
    done = subprocess.run([*console_script("vmpoolerd"), "--check", "--config", str(config)], env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout), took


def fill(r: redis.Redis, state: str, pool: str, hosts: Sequence[str]) -> None:
    """Put VMs into a pool's set, as the manager would (with their `{pool, template}` hash)."""
    pipe = r.pipeline(transaction=False)
    for host in hosts:
        pipe.sadd(K.state(state, pool), host)
        pipe.hset(K.vm(host), mapping={"pool": pool, "template": pool})
    pipe.execute()


def members(r: redis.Redis, state: str, pool: str) -> set[str]:
    return set(r.smembers(K.state(state, pool)))  # type: ignore[arg-type]


class Daemon:
    """One `vmpoolerd` process. `stop()` is the clean way out (a signal and the exit code); `cleanup()`
    makes sure it is gone whatever happened (the fixture calls it)."""

    def __init__(self, tmp: Path, args: Sequence[str], env: Mapping[str, str] | None = None,
                 port: int | None = None, command: Sequence[str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*(command or console_script("vmpoolerd")), *args, "--port", str(self.port)]
        self.env = clean_env(tmp, **(env or {}))
        self.log_path = tmp / f"vmpoolerd-{self.port}-{next(_STARTS)}.out"  # one per process, even on one port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Daemon:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def wait_serving(self, seconds: float = STARTUP_SECONDS) -> Daemon:
        def serving() -> bool:
            assert self.running(), f"vmpoolerd exited ({self.proc and self.proc.returncode}):\n{self.log()}"
            try:
                return self.get("/api/v1/status", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, seconds, f"vmpoolerd serving {self.url}")
        return self

    def send(self, sig: signal.Signals) -> None:
        assert self.running(), f"vmpoolerd is not running:\n{self.log()}"
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, seconds: float = 20) -> int:
        """Send `sig` and wait for the exit; its code. Fails (after killing it) if it outlives `seconds`."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.cleanup()
                raise AssertionError(f"vmpoolerd outlived {sig.name} by {seconds} s:\n{self.log()}") from None
        return int(self.proc.returncode)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
