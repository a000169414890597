"""The fence's one window, measured: a write that the former primary answers just before the replica's
promotion, and has not yet delivered to it, is lost in a planned failover. One connection writes as fast
as it can (move.lua, with the fence in front, straight to the primary: nothing follows the failover,
so what is measured is the fence alone) through `SENTINEL FAILOVER`, on a primary, a replica and three
sentinels (tests/sentinels.py); `--wait` confirms each write with WAIT 1, as `durability: replica` does.

    python bench/fence_window.py [--runs 6] [--wait]

Prints per run the writes answered and those missing from the promoted replica.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.sentinels import sentinel_group  # noqa: E402
from vmpooler_core import scripts  # noqa: E402
from vmpooler_core.keys import Keys  # noqa: E402

K = Keys()
HOSTS = 400_000  # more than one connection moves in a run


def one_run(wait: bool) -> tuple[int, int]:
    with sentinel_group() as group:
        port = group.primary_port()
        primary = redis.Redis(port=port, decode_responses=True)
        for start in range(0, HOSTS, 10_000):
            primary.sadd(K.ready("p"), *(f"h{n}" for n in range(start, start + 10_000)))
        sha = primary.script_load(scripts.source("move"))
        primary.evalsha(sha, 0, K.prefix, "p", "none", "ready", "completed")  # the fence's record
        answered: list[str] = []
        stop = threading.Event()

        def writer() -> None:
            client = redis.Redis(port=port, decode_responses=True)
            for n in range(HOSTS):
                if stop.is_set():
                    return
                try:
                    moved = client.evalsha(sha, 0, K.prefix, "p", f"h{n}", "ready", "running") == 1
                    if moved and (not wait or client.wait(1, 1000) >= 1):
                        answered.append(f"h{n}")
                except redis.ResponseError:
                    pass  # FENCED: refused
                except redis.ConnectionError:
                    return  # the former primary turned replica and dropped us

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.5)
        promoted = group.moved_from(group.failover())
        stop.set()
        thread.join()
        running = group.client(promoted).smembers(K.running("p"))
        return len(answered), sum(1 for host in answered if host not in running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--wait", action="store_true", help="WAIT 1 after each write (durability: replica)")
    args = parser.parse_args()
    total = lost = 0
    for run in range(args.runs):
        answered, missing = one_run(args.wait)
        total, lost = total + answered, lost + missing
        print(f"run {run}: {answered} writes answered, {missing} lost", flush=True)
    print(f"{args.runs} failovers: {total} writes answered, {lost} lost")


if __name__ == "__main__":
    main()
