"""Issue 20: "a write can never succeed on a demoted primary". The fence (lua/fence.lua) guards what runs
behind it, so every write must be a script: watched with Redis's MONITOR while a real daemon (API and
manager, dummy provider) fills its pools and serves what clients do all day, not one write command may
come from a client rather than from a script. A plain write added anywhere later fails this test."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import wait_until, write_config
from tests.redis_server import RedisServer
from vmpooler_core.auth import hash_password
from vmpooler_core.keys import Keys

K = Keys()


def _write_commands(client: redis.Redis) -> set[str]:
    """The names of Redis's commands that write, as the server itself flags them."""
    found = set()
    for name, info in client.command().items():
        if "write" in info.get("flags", []):
            found.add(str(name).lower())
    return found


class Monitor:
    """Every command Redis runs, with where it came from, collected in a thread."""

    def __init__(self, client: redis.Redis) -> None:
        self.seen: list[dict[str, Any]] = []
        self._client = client  # held: a client collected as garbage closes its connections, the monitor's too
        self._monitor = client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            for command in self._monitor.listen():
                self.seen.append(command)
        except (redis.ConnectionError, ValueError, AttributeError):
            pass  # the monitor's connection was closed: the end

    def stop(self) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(5)


def test_every_write_of_the_daemon_is_a_script(redis_server: RedisServer, start_daemon: StartDaemon,
                                               tmp_path: Path) -> None:
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    client.flushall()
    writes = _write_commands(client)
    users = f"auth:\n  provider: users\n  users:\n    jdoe: '{hash_password('pw', iterations=1000)}'\n"
    config = write_config(tmp_path / "vmpooler.yaml", f"redis://127.0.0.1:{redis_server.port}/0",
                          pools="  - {name: pool1, size: 2}\n  - {name: pool2, size: 1}\n",
                          app="  vm_lifetime_auth: 2\n",
                          extra=users + "providers: {dummy: {clone_time: 0.1, boot_time: 0.1}}\n")
    # Its own client, without redis-py's default 5 s read timeout: the daemon may take longer than that to
    # say its first word on a loaded machine, and a timed-out MONITOR would end the watch unseen.
    monitor = Monitor(redis.Redis(port=redis_server.port, decode_responses=True, socket_timeout=None))
    try:
        daemon = start_daemon(["all", "--config", str(config)]).wait_serving()
        wait_until(lambda: client.scard(K.ready("pool1")) == 2 and client.scard(K.ready("pool2")) == 1, 30,
                   "the pools filled")
        with httpx.Client(base_url=daemon.url + "/api/v1", timeout=10) as http:
            token = http.post("/token", auth=("jdoe", "pw")).json()["token"]
            headers = {"X-AUTH-TOKEN": token}
            taken = http.post("/vm/pool1+pool2", headers=headers).json()
            assert taken["ok"], taken
            host = taken["pool1"]["hostname"]
            assert http.put(f"/vm/{host}", json={"lifetime": 3, "tags": {"team": "qa"}},
                            headers=headers).json()["ok"]
            assert http.post(f"/vm/{host}/disk/2", headers=headers).status_code == 202
            assert http.post(f"/vm/{host}/snapshot", headers=headers).status_code == 202
            wait_until(lambda: not client.scard(K.disk_tasks()) and not client.scard(K.snapshot_tasks()), 30,
                       "the manager took the disk and snapshot tasks")
            assert http.delete(f"/vm/{host}", headers=headers).json()["ok"]
            assert http.delete(f"/vm/{taken['pool2']['hostname']}", headers=headers).json()["ok"]
            assert http.delete(f"/token/{token}", auth=("jdoe", "pw")).json()["ok"]
        wait_until(lambda: client.scard(K.ready("pool1")) == 2, 30, "pool1 refilled")
        assert daemon.stop() == 0
    finally:
        monitor.stop()
    plain = [c for c in monitor.seen
             if str(c.get("command", "")).split(" ", 1)[0].lower() in writes and c.get("client_type") != "lua"]
    assert len(monitor.seen) > 100, "the monitor saw the daemon at work"
    assert any(c.get("client_type") == "lua" for c in monitor.seen)
    if plain:
        pytest.fail("plain writes (not behind the fence):\n" + "\n".join(sorted({c["command"] for c in plain})))
