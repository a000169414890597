"""Wall time of the `vmpooler` command as a user runs it: a fresh process each time.

    python bench/cli_bench.py [--runs 20]

Prints the median (and min/max) of N runs of:
- `python -c pass`, the interpreter's own start-up, for scale;
- `vmpooler --help` (the budget is 150 ms);
- a checkout + return pair (two processes) over each backend: directly on Redis (`--redis --config`),
  and over HTTP to a `vmpoolerd api` started here.
It starts its own Redis (tests.redis_server) and vmpoolerd, and stops both. Each pair checks out a VM
put in the ready set beforehand (outside the clock), so every run does the same work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis

from tests.redis_server import RedisServer, free_port
from vmpooler_core.keys import Keys

K = Keys()
CONFIG = """
:config:
  domain: company.com
:providers: {dummy: {}}
:pools:
  - name: pool1
    size: 5
"""


def vmpooler_command() -> list[str]:
    """The installed console script (as users run it), else the module."""
    beside = Path(sys.executable).parent / "vmpooler"
    found = str(beside) if beside.exists() else shutil.which("vmpooler")
    return [found] if found else [sys.executable, "-m", "vmpooler_cli"]


def timed(runs: int, once: Callable[[], None], before: Callable[[], None] = lambda: None) -> list[float]:
    samples = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        once()
        samples.append(time.perf_counter() - start)
    return samples


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@contextmanager
def vmpoolerd(config: Path, redis_url: str) -> Iterator[str | None]:
    """`vmpoolerd api` on a free port, or None when this build has no daemon yet."""
    try:
        import vmpoolerd.__main__  # noqa: F401
    except ImportError:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "api", "--config", str(config),
                             "--bind", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
                            env={**os.environ, "VMPOOLER_REDIS_URL": redis_url})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "/api/v1/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise SystemExit("vmpoolerd did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(f"{name:<42} {statistics.median(ms):8.1f} ms   (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    vmpooler = vmpooler_command()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VMPOOLER_")}
    home = tempfile.mkdtemp(prefix="vmpooler-bench-")
    base_env.update(HOME=home, XDG_CONFIG_HOME=home)
    print(f"vmpooler command: {' '.join(vmpooler)}")
    report("python -c pass", timed(args.runs, lambda: run([sys.executable, "-c", "pass"], base_env)))
    report("vmpooler --help", timed(args.runs, lambda: run([*vmpooler, "--help"], base_env)))

    server = RedisServer().start()
    try:
        config = Path(home) / "vmpooler.yaml"
        config.write_text(CONFIG)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        serial = iter(range(1_000_000))

        def stock() -> None:
            host = f"bench{next(serial):06d}"
            client.sadd(K.ready("pool1"), host)
            client.hset(K.vm(host), mapping={"pool": "pool1", "template": "pool1"})

        def pair(options: list[str]) -> Callable[[], None]:
            def once() -> None:
                host = run([*vmpooler, *options, "checkout", "pool1"], base_env).strip()
                run([*vmpooler, *options, "return", host], base_env)
            return once

        direct = ["--redis", server.url, "--config", str(config)]
        report("checkout + return, --redis (2 processes)", timed(args.runs, pair(direct), stock))
        with vmpoolerd(config, server.url) as url:
            if url is None:
                print("checkout + return, --api: skipped (no vmpoolerd in this build)")
            else:
                report("checkout + return, --api (2 processes)", timed(args.runs, pair(["--api", url]), stock))
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
