"""The dashboard in a real browser: Debian's headless Chromium loads /dashboard/ from a live daemon, runs
its script (which polls /api/v1/status and the pools' history), and the DOM it leaves has one row per pool
with the counts that are in Redis, a chart drawn from the samples in Redis, the providers' health and the
running VMs by platform; the page wrote nothing to the console; a screenshot of it is a real, non-blank
picture (docs/dashboard-3-pools.png and docs/dashboard-100-pools.png are these, see chromium.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.api.helpers import report_health
from tests.daemon.chromium import keep_screenshot, load, parse, png_facts
from tests.daemon.conftest import StartDaemon
from tests.daemon.procs import Daemon, fill, write_config
from tests.pool_samples import write_samples
from vmpooler_core.keys import Keys
from vmpooler_core.pool_history import Sample
from vmpooler_core.provider import ProviderError

K = Keys()
# pool -> (size, ready, pending, running): every pool different, one empty, one with nothing at all.
POOLS = {
    "centos-6-x86_64": (5, 3, 1, 2),
    "debian-7-x86_64": (3, 0, 2, 1),
    "ubuntu-2204-x86_64": (10, 7, 0, 4),
    "win-2012r2-x86_64": (2, 0, 0, 0),
}
ALIASES = {"centos-6-x86_64": ["centos-6-64", "centos-6-amd64"], "ubuntu-2204-x86_64": ["ubuntu"]}
WINDOW = (1280, 900)
HOURS = 6  # the page's default history
POINTS = 180  # the points the history of HOURS hours is drawn in (2 minutes each)
STEP = HOURS * 60 // POINTS


def in_view(newest: int, found: list[Sample]) -> list[Sample]:
    """`found` (the newest first, a minute apart, the first at `newest`): those the page draws. Its
    points are whole spans of STEP minutes, the last the one `newest` is in."""
    first = (newest // STEP - POINTS + 1) * STEP
    return [sample for age, sample in enumerate(found) if newest - age >= first]


def points(newest: int, found: list[Sample]) -> int:
    return len({(newest - age) // STEP for age in range(len(in_view(newest, found)))})


def start(tmp_path: Path, redis_url: str, r: redis.Redis, start_daemon: StartDaemon,
          pools: dict[str, tuple[int, int, int, int]], aliases: dict[str, list[str]]) -> tuple[Daemon, str]:
    """An API daemon over `pools` whose sets hold the given counts; and its config's text."""
    text = ""
    for name, (size, *counts) in pools.items():
        alias = f", alias: [{', '.join(aliases[name])}]" if name in aliases else ""
        text += f"  - {{name: {name}, size: {size}{alias}}}\n"
        for state, count in zip(("ready", "pending", "running"), counts, strict=True):
            fill(r, state, name, [f"{name[:6]}-{state}-{i}" for i in range(count)])
    config = write_config(tmp_path / "vmpooler.yaml", redis_url, pools=text, app="  site_name: 'Pool <b>test</b>'\n")
    return start_daemon(["api", "--config", str(config)]).wait_serving(), config.read_text()


@pytest.fixture
def dashboard(tmp_path: Path, redis_url: str, sync_redis: redis.Redis, start_daemon: StartDaemon) -> Daemon:
    return start(tmp_path, redis_url, sync_redis, start_daemon, POOLS, ALIASES)[0]


def test_dashboard_renders_every_pool_with_its_counts_in_chromium(tmp_path: Path, dashboard: Daemon) -> None:
    page_load = load(tmp_path, dashboard.url + "/dashboard/?sort=name", WINDOW)
    dom = page_load.dom
    page = parse(dom)
    assert page.body.get("data-loaded") == "true", dom  # the script ran and drew a status it fetched
    assert list(page.rows) == sorted(POOLS)
    for name, (size, ready, pending, running) in POOLS.items():
        row = page.rows[name]
        assert row["name"] == name
        assert (row["ready"], row["max"], row["pending"], row["running"]) == (
            str(ready), str(size), str(pending), str(running)), (name, row)
        assert row["aliases"] == ", ".join(ALIASES.get(name, []))
    assert "10 of 20 VMs ready (50%)" in dom and "Found 2 empty pools." in dom
    assert "cannot reach the API" not in dom
    assert page_load.console == []

    data = page_load.png
    width, height, distinct = png_facts(data)
    assert (width, height) == WINDOW
    assert len(data) > 10_000 and distinct > 32, (len(data), distinct)  # a drawn page, not a blank one


# The history: what each sample of a pool holds, a made-up but varied day. ------------------------------

def made_up(index: int, size: int, age: int, empty_for: int = 0) -> Sample:
    """Pool number `index`'s sample `age` minutes before the newest, in a 90-minute cycle: checkouts drain
    it for 24 minutes, it refills for 26, then stays full; in its last `empty_for` minutes it has run dry
    and refuses checkouts."""
    t = (13 * index - age) % 90
    if age < empty_for:
        return Sample(0, 0, size, 2 + index % 5, size, 0, int(age % 2 == 0))
    if t < 24:
        ready, checkouts = size - t * size // 30, int(t % 3 == 0)
    else:
        ready, checkouts = min(size, size - 23 * size // 30 + (t - 24) * size // 26), 0
    return Sample(0, ready, size - ready, 2 + index % 5 + min(t, 50) // 10, size, checkouts, 0)


def write_history(r: redis.Redis, samples: dict[str, list[Sample]]) -> int:
    """Each pool's samples (the newest first), in its lists as the manager's sample.lua writes them, the
    newest a minute ahead of the clock so that the window the API picks (it ends on the newest sample when
    that is ahead) is the same however the clock turns while the test runs. Returns that newest minute."""
    newest = int(time.time() // 60) + 1
    write_samples(r, {pool: [sample._replace(minute=newest - age) for age, sample in reversed(list(enumerate(found)))]
                      for pool, found in samples.items()})
    return newest


def record_times(r: redis.Redis, pool: str, phase: str, seconds: list[float]) -> None:
    """The pool's recent clone or boot times as the manager's record_clone / record_boot append them."""
    r.rpush(K.recent(phase, pool), *(f"{int(time.time()) - 60 * i} {value:.2f}" for i, value in enumerate(seconds)))


SMALL = {"centos-7-x86_64": (5, 4, 0, 6), "debian-12-x86_64": (4, 0, 2, 3), "win-2019-x86_64": (3, 1, 0, 1)}


@pytest.fixture
def small(tmp_path: Path, redis_url: str, sync_redis: redis.Redis, start_daemon: StartDaemon) -> Iterator[Daemon]:
    daemon, config = start(tmp_path, redis_url, sync_redis, start_daemon, SMALL, {"centos-7-x86_64": ["centos"]})
    report_health(redis_url, config, lambda report: report.pool_failed(
        "win-2019-x86_64", ProviderError("folder pools/win-2019 not found")))
    yield daemon


def test_three_pools_with_their_history_health_and_times(tmp_path: Path, small: Daemon,
                                                          sync_redis: redis.Redis) -> None:
    # centos has a target size (demand-driven) for the last three hours: drawn as a dashed line.
    samples = {"centos-7-x86_64": [made_up(0, 5, age)._replace(target=4 if age < 180 else None)
                                   for age in range(HOURS * 60)],
               "debian-12-x86_64": [made_up(1, 4, age, empty_for=40) for age in range(HOURS * 60)],
               "win-2019-x86_64": [made_up(2, 3, age) for age in range(120)]}  # sampled for two hours only
    newest = write_history(sync_redis, samples)
    record_times(sync_redis, "centos-7-x86_64", "clone", [20, 40, 24])
    record_times(sync_redis, "centos-7-x86_64", "boot", [61, 90, 75])

    loaded = load(tmp_path, small.url + "/dashboard/", (1280, 540))
    page = parse(loaded.dom)
    assert loaded.console == []
    assert page.body.get("data-loaded") == "true" and page.body.get("data-history") == "true", loaded.dom
    # Failing first, then empty, then the rest.
    assert list(page.rows) == ["win-2019-x86_64", "debian-12-x86_64", "centos-7-x86_64"]
    drawn = {name: int(row["points"]) for name, row in page.rows.items()}
    assert drawn == {name: points(newest, found) for name, found in samples.items()}
    assert drawn["centos-7-x86_64"] == POINTS and drawn["win-2019-x86_64"] in (60, 61)  # two hours of samples
    for name, found in samples.items():
        row = page.rows[name]
        shown = in_view(newest, found)
        assert row["out"] == str(sum(s.checkouts for s in shown)), (name, row)
        assert row["refused"] == str(sum(s.refused for s in shown)), (name, row)
        assert f"{sum(s.checkouts for s in shown)} checked out" in row["chart"]
    assert int(page.rows["debian-12-x86_64"]["refused"]) > 0
    centos = page.rows["centos-7-x86_64"]
    assert (centos["clone"], centos["boot"]) == ("24 / 40", "75 / 90")
    assert page.rows["debian-12-x86_64"]["clone"] == "–"
    assert page.rows["centos-7-x86_64"]["target"] == str(points(newest, samples["centos-7-x86_64"][:180]))
    assert "target" not in page.rows["win-2019-x86_64"]
    assert len(page.reasons) == 1 and "cannot list its VMs" in page.reasons[0]
    assert "folder pools/win-2019 not found" in page.reasons[0]
    assert "degraded" in page.providers["dummy"] and "failing for win-2019-x86_64" in page.providers["dummy"]
    assert page.platforms == {"centos": "6", "debian": "3", "win": "1"}
    assert all(line.startswith("M") for line in page.platform_lines.values()) and len(page.platform_lines) == 3

    width, height, distinct = png_facts(loaded.png)
    assert (width, height) == (1280, 540) and distinct > 32
    keep_screenshot(loaded.png, "dashboard-3-pools.png")


FAMILIES = ("centos", "debian", "fedora", "opensuse", "oracle", "redhat", "rocky", "sles", "ubuntu", "win")


def many_pools() -> dict[str, tuple[int, int, int, int]]:
    """100 pools, ten of each family: every seventh one empty."""
    pools = {}
    for index in range(100):
        size = 2 + index % 9
        ready = 0 if index % 7 == 3 else 1 + index % size
        pools[f"{FAMILIES[index // 10]}-{index % 10 + 1}-x86_64"] = (size, ready, index % 3, index % 4)
    return pools


def test_a_hundred_pools_failing_and_empty_first_and_filtered(tmp_path: Path, redis_url: str,
                                                              sync_redis: redis.Redis,
                                                              start_daemon: StartDaemon) -> None:
    pools = many_pools()
    daemon, config = start(tmp_path, redis_url, sync_redis, start_daemon, pools, {})
    failing = "redhat-4-x86_64"
    report_health(redis_url, config, lambda report: report.pool_failed(failing, ProviderError("datastore full")))
    write_history(sync_redis, {name: [made_up(i, size, age, empty_for=30 * (pools[name][1] == 0))
                                      for age in range(HOURS * 60)]
                               for i, (name, (size, *_)) in enumerate(pools.items())})

    for i, name in enumerate(pools):
        record_times(sync_redis, name, "clone", [15 + i % 20, 25 + i % 30, 40 + i % 50])
        record_times(sync_redis, name, "boot", [45 + i % 20, 60 + i % 30, 90 + i % 50])

    loaded = load(tmp_path, daemon.url + "/dashboard/", (1280, 1400))
    page = parse(loaded.dom)
    assert loaded.console == []
    assert page.body.get("data-history") == "true", loaded.dom[:2000]
    empty = sorted(name for name, (size, ready, *_) in pools.items() if ready == 0)
    assert list(page.rows)[:1 + len(empty)] == [failing, *empty]
    assert sorted(page.rows) == sorted(pools)
    assert all(int(row["points"]) == POINTS for row in page.rows.values()), "a chart without data"
    assert all(" / " in row["clone"] and " / " in row["boot"] for row in page.rows.values())
    running = {family: str(sum(pools[f"{family}-{n}-x86_64"][3] for n in range(1, 11))) for family in FAMILIES}
    assert page.platforms == running and len(page.platform_lines) == len(FAMILIES)
    keep_screenshot(loaded.png, "dashboard-100-pools.png")
    width, height, distinct = png_facts(loaded.png)
    assert (width, height) == (1280, 1400) and distinct > 32

    # Filtered by name (or alias), in name order: what the page's controls put in its address.
    filtered = load(tmp_path, daemon.url + "/dashboard/?filter=UBUNTU-1&sort=name")
    assert filtered.console == []
    assert list(parse(filtered.dom).rows) == ["ubuntu-1-x86_64", "ubuntu-10-x86_64"]
