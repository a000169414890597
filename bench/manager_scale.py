"""The manager holding thousands of VMs over a hundred pools on the vCenter simulator.

    python bench/manager_scale.py [--vms 1000,5000] [--pools 100] [--measure 120] [--task-limit 50]

For each total of `--vms` (spread evenly over `--pools` pools, one vCenter folder each), against a fresh
simulator (tests/vcsim, clones that complete at once) and a fresh Redis: starts `python -m vmpoolerd
manager` (the vSphere provider, the `hostname` ready check, the default `manager_loop_seconds` and
`vm_checktime`), waits until every VM is ready (the fill time), lets two passes go by, then watches the
manager for `--measure` seconds of steady state and prints:

- the time of a full pass over every pool (median and longest, from the manager's own `pass done` lines);
- vSphere calls per pass, from the simulator's count of the SOAP calls it answered (its control endpoint,
  by method), divided by the passes made meanwhile (in a steady state a pass is all the manager does);
- the manager's CPU (user + system, all threads, from /proc) per VM per minute;
- the manager's resident memory at the end (VmRSS) and its peak (VmHWM) (goal: < 150 MB at 5,000 VMs),
  and the simulator's, for scale.

Goals (issue 15): vSphere calls per pass that do not grow with the number of pools, CPU per VM flat from
1,000 to 5,000 VMs, memory under 150 MB at 5,000.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from tests.redis_server import RedisServer
from tests.vcsim.server import VcsimServer

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "templates/centos-6-x86_64"
_PASS = re.compile(r"pass done full=(\w+) pools=(\d+) seconds=([\d.]+)")


@dataclass
class Figures:
    vms: int
    pools: int
    fill_seconds: float
    passes: list[float]  # full passes' seconds, in the measured window
    calls: Counter[str]  # SOAP calls by method, in the measured window
    cpu_seconds: float
    measured_seconds: float
    rss_mb: float
    peak_mb: float
    vcsim_mb: float

    @property
    def calls_per_pass(self) -> float:
        return sum(self.calls.values()) / max(1, len(self.passes))

    @property
    def cpu_ms_per_vm_minute(self) -> float:
        return self.cpu_seconds * 1000 / self.vms / (self.measured_seconds / 60)


def status_mb(pid: int, field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"{field} not in /proc/{pid}/status"
    return int(match.group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat (after the parenthesised name): utime and stime, every thread.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # USER_HZ is 100 on Linux


def soap_calls(sim: VcsimServer) -> Counter[str]:
    with urllib.request.urlopen(f"{sim.control_url}/state", timeout=10) as answer:
        return Counter(json.load(answer).get("soap_calls", {}))


def config_text(sim: VcsimServer, redis_url: str, pools: int, size: int, task_limit: int) -> str:
    pool_lines = "".join(f"  - name: pool{i:03d}\n    size: {size}\n    template: {TEMPLATE}\n"
                         f"    folder: vmpooler/pool{i:03d}\n    provider: vsphere\n" for i in range(pools))
    return f""":redis:
  url: {redis_url}
:config:
  task_limit: {task_limit}
:providers:
{sim.provider_yaml(ready_check="hostname")}:pools:
{pool_lines}"""


def full_passes(log: Path, offset: int) -> list[float]:
    text = log.read_bytes()[offset:].decode(errors="replace")
    return [float(m.group(3)) for m in _PASS.finditer(text) if m.group(1) == "True"]


def wait_for(condition: object, seconds: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if proc.poll() is not None:
            raise RuntimeError(f"manager exited: {log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f}s")
        time.sleep(0.5)


def run(vms: int, pools: int, measure: float, task_limit: int) -> Figures:
    size = vms // pools
    server = RedisServer().start()
    sim = VcsimServer(templates=[TEMPLATE], folders=[f"vmpooler/pool{i:03d}" for i in range(pools)]).start(timeout=120)
    work = Path(tempfile.mkdtemp(prefix="vmpooler-scale-"))
    config = work / "vmpooler.yaml"
    config.write_text(config_text(sim, server.url, pools, size, task_limit))
    log = work / "manager.log"
    check = redis.Redis.from_url(server.url, decode_responses=True)
    ready_keys = [f"vmpooler__ready__pool{i:03d}" for i in range(pools)]

    def ready() -> int:
        pipe = check.pipeline(transaction=False)
        for key in ready_keys:
            pipe.scard(key)
        return sum(pipe.execute())

    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "manager", "--config", str(config),
                                 "--log-level", "DEBUG"], cwd=REPO, stdout=out, stderr=out)
    try:
        started = time.monotonic()
        wait_for(lambda: ready() >= size * pools, 3600, f"fill of {size * pools} VMs", proc, log)
        fill = time.monotonic() - started
        offset = log.stat().st_size
        wait_for(lambda: len(full_passes(log, offset)) >= 2, 600, "two passes after the fill", proc, log)
        offset = log.stat().st_size
        calls0, cpu0, t0 = soap_calls(sim), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(measure)
        calls1, cpu1, t1 = soap_calls(sim), cpu_seconds(proc.pid), time.monotonic()
        passes = full_passes(log, offset)
        assert sim.proc is not None
        figures = Figures(vms=size * pools, pools=pools, fill_seconds=fill, passes=passes, calls=calls1 - calls0,
                          cpu_seconds=cpu1 - cpu0, measured_seconds=t1 - t0, rss_mb=status_mb(proc.pid, "VmRSS"),
                          peak_mb=status_mb(proc.pid, "VmHWM"), vcsim_mb=status_mb(sim.proc.pid, "VmRSS"))
        if ready() != size * pools:
            raise RuntimeError(f"{size * pools - ready()} VMs stopped being ready while measured")
        return figures
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", default="1000,5000", help="totals of VMs, comma separated")
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--measure", type=float, default=120.0, help="seconds of steady state measured")
    parser.add_argument("--task-limit", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for total in (int(part) for part in args.vms.split(",")):
        f = run(total, args.pools, args.measure, args.task_limit)
        rows.append(f)
        methods = ", ".join(f"{name} {count / max(1, len(f.passes)):.1f}" for name, count in f.calls.most_common())
        print(f"{f.vms} VMs over {f.pools} pools: filled in {f.fill_seconds:.0f}s; {len(f.passes)} full passes in "
              f"{f.measured_seconds:.0f}s, median {statistics.median(f.passes) if f.passes else float('nan'):.2f}s, "
              f"longest {max(f.passes, default=float('nan')):.2f}s; vSphere calls per pass "
              f"{f.calls_per_pass:.1f} ({methods or 'none'}); manager CPU {f.cpu_ms_per_vm_minute:.2f} ms per VM "
              f"per minute; manager memory {f.rss_mb:.0f} MB (peak {f.peak_mb:.0f} MB); simulator {f.vcsim_mb:.0f} MB",
              flush=True)
    print("\n| VMs | pools | fill | full pass (median, longest) | vSphere calls per pass | CPU per VM per minute "
          "| manager memory (peak) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f in rows:
        median = statistics.median(f.passes) if f.passes else float("nan")
        longest = max(f.passes, default=float("nan"))
        print(f"| {f.vms:,} | {f.pools} | {f.fill_seconds:.0f} s | {median:.2f} s, {longest:.2f} s "
              f"| {f.calls_per_pass:.1f} | {f.cpu_ms_per_vm_minute:.2f} ms | {f.rss_mb:.0f} MB ({f.peak_mb:.0f} MB) |")


if __name__ == "__main__":
    main()
