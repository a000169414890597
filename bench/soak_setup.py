"""The soak run's set-up: its pools, configuration, daemons and Redis restarts (see bench/soak.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.processes import terminate  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.vcsim.server import VcsimServer  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402

K = Keys()
TEMPLATE = "templates/soak-template"
KEEP_MARKER = ".keep"  # in a temporary workdir: keep it, the run failed


@dataclass(frozen=True)
class PoolSpec:
    name: str
    size: int
    aliases: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"vmpooler/{self.name}"


# `el` names two pools: a request for it may be served from either.
POOLS = (PoolSpec("centos-7", 8, ("centos", "el")), PoolSpec("rocky-8", 8, ("rocky", "el")),
         PoolSpec("debian-12", 6, ("debian",)), PoolSpec("ubuntu-24", 6, ("ubuntu",)))


def candidates() -> dict[str, set[str]]:
    """Requestable name -> the pools that may serve it."""
    names: dict[str, set[str]] = {}
    for pool in POOLS:
        names.setdefault(pool.name, set()).add(pool.name)
        for alias in pool.aliases:
            names.setdefault(alias, set()).add(pool.name)
    return names


@dataclass
class SoakSettings:
    seconds: float = 120.0
    clients: int = 32
    daemons: int = 3
    seed: int | None = None
    workdir: Path | None = None  # logs, configuration, Redis data; a temporary directory when None
    clone_delay_ms: int = 400
    kill_every: tuple[float, float] = (3.0, 6.0)  # seconds between daemon kills, drawn uniformly
    redis_down: float = 2.0  # seconds Redis stays down
    # "kill": kill -9 (appendfsync everysec), started again on its AOF; "shutdown": SHUTDOWN (the AOF fsynced)
    redis_fault: str = "kill"
    durability: str = "none"  # the daemons' `redis: durability` (aof: Redis 7.2 or later)
    redis_server: str | None = None  # the redis-server binary; None: tests/redis_server.py's choice
    slow_fsync_ms: int = 0  # added to each of Redis's fsyncs (bench/slow_fsync.c): a busy disk
    vcenter_stop: float = 20.0  # seconds the simulator stays stopped
    settle_seconds: float = 60.0  # bound on the settling after the clients stopped
    quiet: bool = False  # no progress lines


def config_text(redis_url: str, sim: VcsimServer, durability: str = "none") -> str:
    pools = "".join(
        f"  - name: {p.name}\n    alias: [{', '.join(p.aliases)}]\n    size: {p.size}\n"
        f"    template: {TEMPLATE}\n    folder: {p.folder}\n    provider: vsphere\n" for p in POOLS)
    # Short passes and leases so that take-overs and recoveries fit a run of minutes; `timeout` (minutes)
    # bounds a pending VM, the provider's `timeout` (seconds) each vSphere call, so a stopped vCenter is
    # an error within seconds rather than a hang.
    return f"""redis:
  url: '{redis_url}'
  socket_timeout: 2
  durability: {durability}
config:
  domain: soak.test
  prefix: soak-
  task_limit: 8
  timeout: 1
  vm_checktime: 0
  vm_lifetime: 2
  max_lifetime_upper_limit: 12
  manager_loop_seconds: 1
  manager_lease_seconds: 4
  manager_backoff_max: 2
providers:
  vsphere:
    server: {sim.host}
    port: {sim.port}
    username: {sim.user}
    password: {sim.password}
    insecure: true
    timeout: 5
    clone_timeout: 30
    ready_check: hostname
pools:
{pools}"""


# Processes ---------------------------------------------------------------------------------------

class Daemon:
    """One `vmpoolerd all` process on a fixed port; killed with SIGKILL and started again on that port."""

    def __init__(self, index: int, config: Path, port: int, log: Path) -> None:
        self.index = index
        self.config = config
        self.port = port
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            log.write(f"=== soak: start {self.starts} of daemon {self.index}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmpoolerd", "all", "--config", str(self.config), "--port", str(self.port),
                 "--log-level", "INFO"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def serving(self) -> bool:
        try:
            return httpx.get(self.url + "/api/v1/status", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_serving(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.serving():
                return True
            time.sleep(0.05)
        return False

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, as a supervisor would; SIGKILL after `grace`. Returns the exit code."""
        if self.proc is None:
            return None
        return terminate(self.proc, grace)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class SoakRedis(RedisServer):
    """The soak's Redis: AOF on, fsynced every second (Redis's default, said here so the run says what it
    measures), on the binary `binary` when given. With `slow_fsync_ms`, each fsync takes that much longer
    (bench/slow_fsync.c, preloaded: a disk busy with other writes)."""

    def __init__(self, directory: str, binary: str | None = None, slow_fsync_ms: int = 0) -> None:
        super().__init__(appendonly=True, directory=directory, extra=("--appendfsync", "everysec"))
        self.binary = binary
        self.preload = _build_slow_fsync(Path(directory)) if slow_fsync_ms else None
        self.slow_fsync_ms = slow_fsync_ms

    def args(self) -> list[str]:
        args = super().args()
        if self.binary:
            args[0] = self.binary
        if self.preload:  # env execs the server: the process started is Redis itself, as kill -9 needs
            args = ["env", f"LD_PRELOAD={self.preload}", f"SLOW_FSYNC_MS={self.slow_fsync_ms}", *args]
        return args

    def version(self) -> str:
        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            info = client.info("server")
            if "valkey_version" in info:  # (valkey answers redis_version 7.2.4, the Redis it is compatible with)
                return f"valkey {info['valkey_version']}"
            return f"redis {info['redis_version']}"
        finally:
            client.close()


def _build_slow_fsync(directory: Path) -> str:
    library = directory / "slow_fsync.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(ROOT / "bench" / "slow_fsync.c"), "-ldl"],
                   check=True)
    return str(library)


def kill_redis(server: RedisServer, down: float) -> tuple[float, float]:
    """kill -9: what Redis had not yet written to its AOF is gone; `down` seconds of outage, then started
    again on the same port and directory (it loads the AOF). Returns (monotonic time it went down, time it
    answered again)."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(15)
    went_down = time.monotonic()
    time.sleep(down)
    server.start()
    return went_down, time.monotonic()


def restart_redis(server: RedisServer, down: float) -> tuple[float, float]:
    """SHUTDOWN (the AOF is fsynced), `down` seconds of outage, start again on the same port and directory.
    Returns (monotonic time it went down, time it answered again)."""
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        client.shutdown()  # returns when the server closed the connection
    finally:
        client.close()
    assert server.proc is not None
    server.proc.wait(15)
    went_down = time.monotonic()
    time.sleep(down)
    server.start()  # same port, same --dir, appendonly: it loads the AOF
    return went_down, time.monotonic()


