"""The README's first command from a clean state directory: `vmpoolerd` with no configuration starts
its own Redis-compatible server and the demo pools; `vmpooler checkout centos-6-64` from a second
terminal gets a VM; after a restart of the daemon that VM is still recorded as running; and the
embedded server never outlives the daemon."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, alive, clean_env, console_script, wait_until


def embedded_server_pid(state: Path) -> int:
    """The pid of the daemon's valkey-server, from its pidfile (written once it runs)."""
    pidfile = state / "vmpooler" / "redis.pid"
    pid = wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the embedded server's pidfile")
    return int(pid)


def centos_ready(daemon: Daemon) -> bool:
    assert daemon.running(), daemon.log()
    return bool(daemon.get("/api/v1/status").json()["pools"]["centos-6-x86_64"]["ready"] >= 1)


def test_first_command_checkout_restart_and_the_vm_is_still_recorded(
        tmp_path: Path, start_daemon: StartDaemon) -> None:
    state = tmp_path / "state"  # empty: nothing was ever run here
    env = {"XDG_STATE_HOME": str(state), "HOME": str(tmp_path / "home")}

    first = start_daemon([], env=env).wait_serving()  # `vmpoolerd`, no config (--port: 4567 may be taken)
    assert "no configuration given: running the demo pools on an embedded Redis" in first.log()
    server = embedded_server_pid(state)
    wait_until(lambda: centos_ready(first), 30, "a ready VM in the demo pool centos-6-x86_64")

    # From a second terminal: the installed CLI, the alias of the README.
    cli = subprocess.run([*console_script("vmpooler"), "checkout", "centos-6-64"], capture_output=True, text=True,
                         timeout=30, env=clean_env(tmp_path, VMPOOLER_URL=first.url, **env))
    assert cli.returncode == 0, cli.stderr
    fqdn = cli.stdout.strip()
    assert fqdn.startswith("demo-") and fqdn.endswith(".vmpooler.test") and "\n" not in fqdn, cli.stdout
    assert first.get(f"/api/v1/vm/{fqdn}").json()[fqdn.split(".")[0]]["state"] == "running"

    assert first.stop() == 0, first.log()
    assert not alive(server), "the embedded valkey-server outlived the daemon"
    assert (state / "vmpooler" / "appendonlydir").is_dir()  # persisted with AOF in the state directory

    second = start_daemon([], env=env, port=first.port).wait_serving()
    again = embedded_server_pid(state)
    assert again != server
    host = fqdn.split(".")[0]
    vm = second.get(f"/api/v1/vm/{host}")
    assert vm.status_code == 200, vm.text
    assert vm.json()[host]["state"] == "running" and vm.json()[host]["template"] == "centos-6-x86_64"
    assert second.stop() == 0, second.log()
    assert not alive(again), "the embedded valkey-server outlived the daemon"
