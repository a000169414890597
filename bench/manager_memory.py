"""Memory of a manager process keeping 100 pools x 50 VMs filled (dummy provider).

    python bench/manager_memory.py [--pools 100] [--size 50] [--settle 20]

Starts its own Redis, then `python -m vmpoolerd manager` on a configuration of `--pools` pools of
`--size` VMs; once every VM is ready it lets the manager run `--settle` more seconds of passes (each
re-checking every ready VM) and prints the process's resident memory (VmRSS, target < 150 MB) and its
peak (VmHWM), read from /proc, and the fill time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert match, f"{field} not in /proc/{pid}/status"
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of passes after the fill")
    args = parser.parse_args()
    total = args.pools * args.size
    server = RedisServer().start()
    work = Path(tempfile.mkdtemp(prefix="vmpooler-bench-"))
    pools = "".join(f"  - name: pool{i:03d}\n    size: {args.size}\n" for i in range(args.pools))
    (work / "vmpooler.yaml").write_text(f""":redis:
  url: {server.url}
:config:
  task_limit: 50
  vm_checktime: 0
  manager_loop_seconds: 2
:providers:
  :dummy:
    clone_time: 0
    boot_time: 0
:pools:
{pools}""")
    check = redis.Redis.from_url(server.url, decode_responses=True)
    log = open(work / "manager.log", "wb")
    command = [sys.executable, "-m", "vmpoolerd", "manager", "--config", str(work / "vmpooler.yaml"),
               "--log-level", "WARNING"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log)
    try:
        started = time.monotonic()
        pipe_pools = [f"vmpooler__ready__pool{i:03d}" for i in range(args.pools)]

        def ready() -> int:
            pipe = check.pipeline(transaction=False)
            for key in pipe_pools:
                pipe.scard(key)
            return sum(pipe.execute())

        while ready() < total:
            if proc.poll() is not None:
                raise RuntimeError(f"manager exited: {(work / 'manager.log').read_text()[-2000:]}")
            if time.monotonic() - started > 600:
                raise RuntimeError("fill did not finish in 10 minutes")
            time.sleep(0.2)
        filled = time.monotonic() - started
        rss_filled = status_kb(proc.pid, "VmRSS")
        time.sleep(args.settle)
        assert ready() == total, "pools no longer full"
        rss = status_kb(proc.pid, "VmRSS")
        peak = status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        check.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"manager with {args.pools} pools x {args.size} VMs = {total} VMs (dummy provider)")
    print(f"  filled in {filled:.1f} s (task_limit 50, clone_time 0)")
    print(f"  RSS when filled {rss_filled / 1024:.1f} MB; after {args.settle:.0f} s more of passes "
          f"{rss / 1024:.1f} MB; peak {peak / 1024:.1f} MB (target < 150 MB)")
    print(f"  manager exit code on SIGTERM: {proc.returncode}")


if __name__ == "__main__":
    main()
