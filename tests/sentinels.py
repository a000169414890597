"""A Sentinel group for tests and benchmarks: a primary, its replicas and three sentinels (Debian's
redis-server and redis-sentinel), real processes on loopback, as operators run them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.processes import terminate
from tests.redis_server import RedisServer, free_port

MASTER = "vmp"


def until(predicate: Callable[[], object], seconds: float, what: str,
          ignore: tuple[type[BaseException], ...] = (redis.RedisError, OSError)) -> float:
    """Poll `predicate` (the errors of `ignore` count as false) until true; the seconds it took."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(*ignore):
            if predicate():
                return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.05)


@dataclass
class Group:
    servers: list[RedisServer]  # [0] the first primary
    sentinel_ports: list[int]
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sentinels_yaml(self) -> str:
        return "[" + ", ".join(f"'127.0.0.1:{port}'" for port in self.sentinel_ports) + "]"

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], decode_responses=True, socket_timeout=2)

    def primary_port(self) -> int:
        """The primary as the sentinels' newest configuration names it."""
        states = []
        for index in range(len(self.sentinel_ports)):
            with contextlib.suppress(redis.RedisError):
                states.append(self.sentinel(index).sentinel_master(MASTER))
        return int(max(states, key=lambda state: int(state["config-epoch"]))["port"])

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def in_sync(self) -> bool:
        primary = self.primary_port()
        for server in self.servers:
            if server.port != primary:
                info = self.client(server.port).info("replication")
                if info.get("role") != "slave" or info.get("master_link_status") != "up" \
                        or int(info.get("master_port", 0)) != primary:
                    return False
        return True

    def ready_for_failover(self) -> bool:
        """Every sentinel knows every replica and sees no failover: SENTINEL FAILOVER would not be refused."""
        for index in range(len(self.sentinel_ports)):
            sentinel = self.sentinel(index)
            master = sentinel.sentinel_master(MASTER)
            if "failover_in_progress" in master["flags"] or master["num-slaves"] < len(self.servers) - 1:
                return False
            if master["num-other-sentinels"] < len(self.sentinel_ports) - 1:
                return False
            if any(r["is_sdown"] or r["is_disconnected"] or r.get("master-link-status") != "ok"
                   for r in sentinel.sentinel_slaves(MASTER)):
                return False
        return self.in_sync()

    def failover(self) -> int:
        """SENTINEL FAILOVER, as an operator's planned maintenance; returns the former primary's port."""
        old = self.primary_port()
        until(self.ready_for_failover, 30, "the group is ready for a failover")
        self.sentinel().sentinel_failover(MASTER)
        return old

    def kill_primary(self) -> RedisServer:
        """kill -9 of the primary: no goodbye to the replicas or the sentinels."""
        server = self.server(self.primary_port())
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait(10)
        return server

    def moved_from(self, old: int, seconds: float = 30) -> int:
        """Wait until the sentinels name a primary other than `old`, and it answers as one; its port."""
        until(lambda: self.primary_port() != old and self.client(self.primary_port()).role()[0] == "master",
              seconds, "the sentinels name the promoted replica")
        return self.primary_port()


@contextlib.contextmanager
def sentinel_group(replicas: int = 1, sentinels: int = 3, workdir: Path | None = None,
                   server_config: dict[str, str] | None = None) -> Iterator[Group]:
    """A primary with `replicas` replicas and `sentinels` sentinels (quorum: a majority) watching it,
    failing a primary over 500 ms after it stops answering. `server_config`: CONFIG SET on every server
    (min-replicas-to-write, for one)."""
    binary = shutil.which("redis-sentinel")
    assert binary, "redis-sentinel is not installed: run scripts/test"
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vmpooler-sentinels-"))
    group = Group([], [], workdir)
    try:
        for _ in range(replicas + 1):
            group.servers.append(RedisServer().start())
        primary = group.servers[0]
        for server in group.servers[1:]:
            group.client(server.port).replicaof("127.0.0.1", primary.port)
        for server in group.servers:
            for key, value in (server_config or {}).items():
                group.client(server.port).config_set(key, value)
        quorum = sentinels // 2 + 1
        for index in range(sentinels):
            port = free_port()
            conf = workdir / f"sentinel{index}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} {quorum}\n"
                            f"sentinel down-after-milliseconds {MASTER} 500\n"
                            f"sentinel failover-timeout {MASTER} 5000\n")
            with open(workdir / f"sentinel{index}.log", "wb") as log:
                group.procs.append(subprocess.Popen([binary, str(conf)], stdout=log, stderr=log))
            group.sentinel_ports.append(port)
        until(group.ready_for_failover, 30, "the sentinels know the group")
        yield group
    finally:
        for proc in group.procs:
            terminate(proc, 10)
        for server in group.servers:
            server.stop()
