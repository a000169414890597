"""GET /status latency while one client address holds 1,000 slow connections (slowloris).

Starts its own redis-server and a `vmpoolerd api` with the usual 1,024 open files (soft limit) and the
default `http:` settings, and measures GET /api/v1/status from 127.0.0.1 (concurrency 1, keep-alive and a
new connection per request): first alone, then while an attacker process on 127.0.0.2 keeps `--slow`
connections open, each sending a request head one byte every `--trickle` seconds and never finishing it,
and opening a new one `--retry` seconds after one is answered (429 over the per-address cap, 408 at
header_timeout) or closed. Prints p50/p99/max latency and the failures for each, and what the attacker
got. `--per-address 0` runs the daemon without the per-address cap (only the total one), to show what
that cap is for.

    python bench/slow_clients.py [--slow 1000] [--seconds 10] [--trickle 1] [--retry 1] [--files 1024]
                                 [--per-address 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_load import Http, arun, serving  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

HALF_SENT = b"GET /api/v1/status HTTP/1.1\r\nHost: bench\r\nX-Slow: "


def open_files(files: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(files, hard), hard))


def start_daemon(redis_url: str, workdir: str, files: int, per_address: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = Path(workdir) / "vmpooler.yaml"
    pools = "\n".join(f"  - {{name: pool{n}, size: 0}}" for n in range(1, 11))
    config.write_text(f"redis: {{url: '{redis_url}'}}\nconfig: {{log_level: WARNING}}\n"
                      f"http: {{max_connections_per_address: {per_address}}}\n"
                      f"providers: {{dummy: {{}}}}\npools:\n{pools}\n")
    proc = subprocess.Popen([sys.executable, "-m", "vmpoolerd", "api", "--config", str(config), "--port", str(port)],
                            cwd=ROOT, preexec_fn=lambda: open_files(files))
    return serving(proc, port), port


# The attacker (a process of its own: its work must not slow the measuring client's loop) -------------

async def attack(port: int, slow: int, trickle: float, retry: float, seconds: float) -> dict[str, int]:
    seen: Counter[str] = Counter()
    held = 0  # connections the daemon kept: still unanswered after the first trickled byte
    most_held = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal held, most_held
        while time.monotonic() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            except OSError:
                seen["connect failed"] += 1
                await asyncio.sleep(retry)
                continue
            writer.write(HALF_SENT)
            kept = False
            try:
                while time.monotonic() < stop:
                    try:
                        data = await asyncio.wait_for(reader.read(4096), trickle)
                    except TimeoutError:
                        writer.write(b"a")  # one more byte of a header that never ends
                        if not kept:
                            kept, held = True, held + 1
                            most_held = max(most_held, held)
                        continue
                    seen[f"answered {int(data[9:12])}" if data.startswith(b"HTTP/1.1 ") else "closed"] += 1
                    break
            except (OSError, RuntimeError):  # uvloop: RuntimeError writing to a transport the peer closed
                seen["reset"] += 1
            held -= kept
            writer.close()
            await asyncio.sleep(retry)

    await asyncio.gather(*(one() for _ in range(slow)))
    return {**seen, "most held by the daemon at once": most_held}


# The measuring client --------------------------------------------------------------------------------

async def measure(port: int, seconds: float, keep_alive: bool) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    http = Http("127.0.0.1", port, keep_alive)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(http.request("GET", "/api/v1/status"), 5)
        except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - start)
        if status != 200:
            failures += 1
            await http.close()  # a refusal closes the connection: the next request opens another
    await http.close()
    return latencies, failures


def report(label: str, latencies: list[float], failures: int) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{label:<34} {len(ordered):>7} {statistics.median(ordered) * 1000:>8.2f} {p99 * 1000:>8.2f} "
          f"{ordered[-1] * 1000:>8.1f} {failures:>8}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", default=1000, type=int, help="slow connections the attacker keeps trying to hold")
    parser.add_argument("--seconds", default=10.0, type=float, help="measured seconds per scenario")
    parser.add_argument("--trickle", default=1.0, type=float, help="seconds between the bytes of a slow head")
    parser.add_argument("--retry", default=1.0, type=float, help="seconds before a dropped connection is replaced")
    parser.add_argument("--files", default=1024, type=int, help="the daemon's open-files limit (soft)")
    parser.add_argument("--per-address", default=256, type=int, help="http: max_connections_per_address")
    parser.add_argument("--attacker", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: port, seconds
    args = parser.parse_args()
    open_files(args.slow + 512)
    if args.attacker:
        port, seconds = args.attacker
        print(json.dumps(arun(attack(port, args.slow, args.trickle, args.retry, seconds))))
        return
    server = RedisServer().start()
    proc, port = start_daemon(server.url, tempfile.mkdtemp(prefix="vmpooler-bench-"), args.files, args.per_address)
    try:
        print(f"vmpoolerd api: {args.files} open files, max_connections_per_address {args.per_address}; "
              f"attacker: {args.slow} slow connections from 127.0.0.2")
        print(f"{'GET /api/v1/status from 127.0.0.1':<34} {'reqs':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'failures':>8}")
        for keep_alive in (True, False):
            mode = "keep-alive" if keep_alive else "new connection"
            report(f"alone, {mode}", *arun(measure(port, args.seconds, keep_alive)))
        # The attacker runs through both measurements, with a few seconds to fill its connections first.
        attacker = subprocess.Popen([sys.executable, __file__, "--slow", str(args.slow), "--trickle",
                                     str(args.trickle), "--retry", str(args.retry), "--attacker", str(port),
                                     str(int(2 * args.seconds + 5))], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        for keep_alive in (True, False):
            mode = "keep-alive" if keep_alive else "new connection"
            report(f"under attack, {mode}", *arun(measure(port, args.seconds, keep_alive)))
        out, _ = attacker.communicate(timeout=3 * args.seconds + 60)
        print("attacker:", ", ".join(f"{what}: {count}" for what, count in json.loads(out).items()))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.stop()


if __name__ == "__main__":
    main()
