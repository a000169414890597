"""The daemon's log, end to end: the audit and access lines of real requests, a line on SIGHUP (the first
of the reopened file), and a stop that says which clones it waits for."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import redis

from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import fill, wait_until, write_config

POOL = "  - {name: pool1, size: 1}\n"


def test_a_checkout_leaves_an_audit_line_and_an_access_line(tmp_path: Path, redis_url: str,
                                                           sync_redis: redis.Redis,
                                                           start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL, app="  access_log: true\n")
    daemon = start_daemon(["api", "--config", str(config)]).wait_serving()
    fill(sync_redis, "ready", "pool1", ["vm1"])
    answer = httpx.post(daemon.url + "/api/v1/vm/pool1", headers={"X-Request-Id": "ci-job-7"}, timeout=5)
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "ci-job-7"
    wait_until(lambda: "vmpooler.access: POST /api/v1/vm/pool1 200" in daemon.log(), 10, "the access line")
    log = daemon.log()
    assert re.search(r" INFO vmpooler\.audit: checkout pool=pool1 vm=vm1 user=- client=127\.0\.0\.1 "
                     r"request=ci-job-7\n", log), log
    assert re.search(r" INFO vmpooler\.access: POST /api/v1/vm/pool1 200 [\d.]+ms client=127\.0\.0\.1 "
                     r"request=ci-job-7\n", log), log
    assert daemon.stop() == 0


def test_sighup_is_the_first_line_of_the_reopened_log(tmp_path: Path, redis_url: str,
                                                      start_daemon: StartDaemon) -> None:
    logfile = tmp_path / "vmpoolerd.log"
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL, app=f"  logfile: '{logfile}'\n")
    daemon = start_daemon(["api", "--config", str(config)]).wait_serving()
    logfile.rename(tmp_path / "vmpoolerd.log.1")
    daemon.send(signal.SIGHUP)
    wait_until(logfile.exists, 10, "the log file reopened")
    first = logfile.read_text().splitlines()[0]
    assert first.endswith(f"INFO vmpooler.daemon: SIGHUP: log file reopened: {logfile}"), first
    assert daemon.stop() == 0


def test_sighup_without_a_log_file_says_so(tmp_path: Path, redis_url: str, start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=POOL)
    daemon = start_daemon(["api", "--config", str(config)]).wait_serving()
    daemon.send(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: logging to stderr, no log file to reopen" in daemon.log(), 10, "the SIGHUP line")
    assert daemon.get("/api/v1/status").status_code == 200
    assert daemon.stop() == 0


def test_a_stop_says_it_waits_for_the_running_clones(tmp_path: Path, redis_url: str,
                                                     start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools="  - {name: pool1, size: 2}\n",
                          extra="providers:\n  dummy: {clone_time: 2, boot_time: 0}\n")
    daemon = start_daemon(["manager", "--config", str(config)])
    wait_until(lambda: daemon.log().count("clone started pool=pool1") == 2, 20, "two clones started")
    assert daemon.stop() == 0, daemon.log()
    log = daemon.log()
    assert re.search(r"stopping: waiting up to \d+s for 2 clone\(s\) to finish", log), log
    assert log.count("clone done pool=pool1") == 2 and "still running" not in log, log
