"""The dashboard's history against a real Redis: checkouts and refusals tallied by the checkout script and
taken into each pool's next sample by the manager's sample script (vmpooler_core/pool_history.py); the
original's `?history=1` shapes and the page's history document filled from those samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
import redis
from redis import asyncio as aioredis

from tests import pool_samples
from tests.api.conftest import MakeClient, TestClient
from tests.api.helpers import K, expect_json, ready, running
from vmpooler_core import pool_history
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import SAMPLES_KEPT
from vmpooler_core.pool_history import PoolFigures, Sample, combine

MINUTE = 29_000_000  # a minute (epoch / 60) of the samples the tests take themselves


def take(redis_url: str, pools: Sequence[PoolFigures], minute: int | None = MINUTE) -> float:
    return pool_samples.take(redis_url, pools, minute)


def samples(r: redis.Redis, pool: str, minutes: int = 1) -> list[Sample | None]:
    return [Sample.parse(entry) for entry in r.lrange(K.samples(pool, minutes), 0, -1)]  # type: ignore[union-attr]


def test_checkouts_and_refusals_are_tallied_and_go_into_the_next_sample(client: TestClient, r: redis.Redis,
                                                                        redis_url: str) -> None:
    ready(r, "pool1", "a1", "a2")
    r.sadd(K.pending("pool2"), "p1")
    assert client.post("/api/v1/vm/pool1+poolone").json()["ok"]  # two VMs of pool1, one through its alias
    expect_json(client.post("/api/v1/vm/pool2"), False, 503)  # pool2 has none ready
    expect_json(client.post("/api/v1/vm", json={"poolone": 1}), False, 503)  # nor has pool1 now
    expect_json(client.post("/api/v1/vm/nopool"), False, 404)  # not a pool: counted against none
    assert r.hgetall(K.tally()) == {"checkout:pool1": "2", "refused:pool2": "1", "refused:pool1": "1"}

    before = time.time()
    now = take(redis_url, [PoolFigures("pool1", 5), PoolFigures("pool2", 10, target=7)])
    assert before - 5 < now < time.time() + 5  # Redis's clock
    assert samples(r, "pool1") == [Sample(MINUTE, ready=0, pending=0, running=2, size=5, checkouts=2, refused=1)]
    assert samples(r, "pool2") == [Sample(MINUTE, 0, 1, 0, 10, 0, 1, target=7)]
    assert r.hgetall(K.tally()) == {}  # taken into the samples

    # Another manager sampling the same minute (the lease just moved) writes nothing; the next checkout
    # goes into the next minute's sample.
    ready(r, "pool2", "b1")
    assert client.post("/api/v1/vm/pool2").json()["ok"]
    take(redis_url, [PoolFigures("pool1", 5), PoolFigures("pool2", 10)])
    assert len(samples(r, "pool2")) == 1 and r.hgetall(K.tally()) == {"checkout:pool2": "1"}
    take(redis_url, [PoolFigures("pool2", 10)], MINUTE + 1)
    assert samples(r, "pool2")[-1] == Sample(MINUTE + 1, 0, 1, 1, 10, 1, 0)


def test_a_pool_keeps_a_day_of_samples_and_they_expire_without_a_manager(r: redis.Redis, redis_url: str) -> None:
    day = [Sample(MINUTE - SAMPLES_KEPT + i, i % 3, 0, 0, 5, 1, 0) for i in range(SAMPLES_KEPT)]
    r.rpush(K.samples("pool1"), *(sample.encode() for sample in day))
    r.rpush(K.samples("pool1", 8), *(Sample(MINUTE - SAMPLES_KEPT + 8 * i, 0, 0, 0, 5, 8, 0).encode()
                                     for i in range(SAMPLES_KEPT // 8)))
    take(redis_url, [PoolFigures("pool1", 5)])
    kept = samples(r, "pool1")
    assert len(kept) == SAMPLES_KEPT
    assert kept[0] is not None and kept[0].minute == MINUTE - SAMPLES_KEPT + 1
    assert kept[-1] is not None and kept[-1].minute == MINUTE
    # The spans the new minute closed, rolled up; a day of each kept.
    assert samples(r, "pool1", 2) == [combine(day[-2:], MINUTE - 2)]
    eights = samples(r, "pool1", 8)
    assert len(eights) == SAMPLES_KEPT // 8 and eights[-1] == combine(day[-8:], MINUTE - 8)
    for key in (K.samples("pool1"), K.samples("pool1", 2), K.samples("pool1", 8)):
        assert 0 < r.ttl(key) <= pool_history.SAMPLES_TTL
    assert Sample.parse("not a sample") is None and Sample.parse("1 2 3") is None


FAMILIES = "providers: {dummy: {}}\npools:\n - {name: centos-6-x86_64, size: 4}\n" \
           " - {name: centos-7-x86_64, size: 8}\n - {name: debian-7-x86_64, size: 2}\n"


def ahead(r: redis.Redis, pool: str, found: dict[int, tuple[int, int]], size: int = 4) -> int:
    """Samples of `pool` at minutes relative to the newest (age -> (ready, running)), the newest a minute
    ahead of the clock: the API's window then ends on it however the clock turns during the test."""
    newest = int(time.time() // 60) + 1
    r.rpush(K.samples(pool), *(Sample(newest - age, ready_count, 0, runs, size, age, 0).encode()
                               for age, (ready_count, runs) in sorted(found.items(), reverse=True)))
    return newest


def test_pool_and_running_history_in_the_originals_shapes(make_client: MakeClient, r: redis.Redis) -> None:
    # centos-6: an old sample (out of the last hour), then minutes -5, -4, -2 and 0 (none at -3 and -1).
    ahead(r, "centos-6-x86_64", {70: (4, 0), 5: (1, 3), 4: (2, 3), 2: (4, 1), 0: (3, 2)})
    ahead(r, "centos-7-x86_64", {1: (7, 4), 0: (8, 6)}, size=8)
    ready(r, "debian-7-x86_64", "d1")
    running(r, "debian-7-x86_64", "d2")
    with make_client(pools=FAMILIES) as client:
        pools = client.get("/dashboard/stats/vmpooler/pool?history=1").json()
        # Each minute of the last hour from the first sample in it; a gap filled with the value before.
        assert pools["centos-6-x86_64"] == {"size": 4, "ready": 0, "history": [1, 2, 2, 4, 4, 3]}
        assert pools["centos-7-x86_64"]["history"] == [7, 8]
        assert pools["debian-7-x86_64"] == {"size": 2, "ready": 1, "history": [1]}  # no sample: ready now
        assert "history" not in client.get("/dashboard/stats/vmpooler/pool").json()["centos-6-x86_64"]

        families = client.get("/dashboard/stats/vmpooler/running?history=1").json()
        # The family's pools added up minute by minute (centos-7 from its first sample on).
        assert families["centos"] == {"running": 0, "history": [3, 3, 3, 1, 1 + 4, 2 + 6]}
        assert families["debian"] == {"running": 1}  # no samples: no history, as the original without graphite
        assert client.get("/dashboard/stats/vmpooler/running").json()["centos"] == {"running": 0}


async def _record(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        inventory = Inventory(client)
        for host, seconds in (("h1", 30.0), ("h2", 12.5), ("h3", 14.0)):
            await inventory.record_clone("centos-7-x86_64", host, seconds)
        await inventory.record_boot("centos-7-x86_64", "h1", 95.0)
    finally:
        await client.aclose()


def test_the_pages_history_document(make_client: MakeClient, r: redis.Redis, redis_url: str) -> None:
    newest = int(time.time() // 60) + 1  # a minute ahead: the API's window ends on it (see `ahead`)
    c6 = {age: Sample(newest - age, ready_count, 0, runs, 4, age, 0)
          for age, (ready_count, runs) in {70: (4, 0), 5: (1, 3), 4: (2, 3), 2: (4, 1), 0: (3, 2)}.items()}
    pool_samples.replay(r, redis_url, {"centos-6-x86_64": sorted(c6.values()),
                                       "centos-7-x86_64": [Sample(newest, 8, 0, 6, 8, 0, 0, target=6)]})
    asyncio.run(_record(redis_url))
    with make_client(pools=FAMILIES) as client:
        doc = client.get("/dashboard/stats/vmpooler/history?hours=1").json()
        assert (doc["hours"], doc["step"], doc["now"]) == (1, 60, newest * 60)
        assert doc["start"] == (newest - 59) * 60
        pool = doc["pools"]["centos-6-x86_64"]
        assert all(len(series) == 60 for series in pool.values() if isinstance(series, list))
        assert pool["ready"][-6:] == [1, 2, None, 4, None, 3]  # gaps left empty: the page shows them
        assert pool["checkouts"][-6:] == [5, 4, None, 2, None, 0] and pool["size"][-1] == 4
        assert "target" not in pool and doc["pools"]["centos-7-x86_64"]["target"][-1] == 6
        assert pool["clone"] is None and doc["pools"]["debian-7-x86_64"]["ready"] == [None] * 60
        clone = doc["pools"]["centos-7-x86_64"]["clone"]
        assert (clone["median"], clone["slowest"], clone["count"]) == (14.0, 30.0, 3)
        assert doc["pools"]["centos-7-x86_64"]["boot"]["median"] == 95.0
        assert doc["running"]["centos"][-2:] == [None, 2 + 6] and doc["running"]["debian"] == [None] * 60

        six = client.get("/dashboard/stats/vmpooler/history").json()  # six hours: two minutes a point
        assert (six["hours"], six["step"], len(six["pools"]["centos-6-x86_64"]["ready"])) == (6, 120, 180)
        assert six["start"] == (newest // 2 - 179) * 2 * 60  # points on whole two-minute spans
        pool = six["pools"]["centos-6-x86_64"]
        # Each span's lowest ready and its checkouts added up, read from the rollups (and the span under
        # way, from its minutes).
        spans: dict[int, list[Sample]] = {}
        for sample in sorted(c6.values()):
            spans.setdefault(sample.minute // 2 - newest // 2 + 179, []).append(sample)
        assert {i: (pool["ready"][i], pool["checkouts"][i]) for i in spans} == {
            i: (min(s.ready for s in found), sum(s.checkouts for s in found)) for i, found in spans.items()}
        assert sum(value is not None for value in pool["ready"]) == len(spans)


def test_the_rollups_combine_each_span_as_the_reader_does(r: redis.Redis, redis_url: str) -> None:
    timeline = [Sample(MINUTE + m, (m * 5) % 7, m % 3, 10 + m % 4, 6 if m < 9 else 7, m % 2, int(m == 4),
                       target=5 if m > 6 else None)
                for m in range(17) if m not in (3, 10, 11)]  # a gap inside a span, and a whole span missed
    pool_samples.replay(r, redis_url, {"pool1": timeline})
    assert samples(r, "pool1") == timeline
    for span in pool_history.ROLLUPS:
        spans: dict[int, list[Sample]] = {}
        for sample in timeline:
            spans.setdefault(sample.minute - sample.minute % span, []).append(sample)
        closed = sorted(spans)[:-1]
        assert samples(r, "pool1", span) == [combine(spans[start], start) for start in closed], span

        async def read(minutes: int = span) -> pool_history.History:
            client = aioredis.Redis.from_url(redis_url, decode_responses=True)
            try:
                return await pool_history.read(Inventory(client), ["pool1"], 100, minutes)
            finally:
                await client.aclose()
        found = asyncio.run(read())
        assert found.samples["pool1"] == [combine(spans[start], start) for start in sorted(spans)]
        assert found.newest == MINUTE + 16


def test_one_document_a_window_is_served_to_every_page_for_a_while(client: TestClient, r: redis.Redis) -> None:
    first = client.get("/dashboard/stats/vmpooler/history?hours=1").json()
    assert first["pools"]["pool1"]["ready"][-1] is None
    ahead(r, "pool1", {0: (3, 0)})
    assert client.get("/dashboard/stats/vmpooler/history?hours=1").json() == first  # the one made just now
    assert client.get("/dashboard/stats/vmpooler/history?hours=2").json()["pools"]["pool1"]["ready"][-1] == 3


@pytest.mark.parametrize("hours", ["0", "25", "x", "-1", "1.5", ""])
def test_a_bad_number_of_hours_is_a_400(client: TestClient, hours: str) -> None:
    response = client.get(f"/dashboard/stats/vmpooler/history?hours={hours}")
    expect_json(response, False, 400)
    assert response.json()["code"] == "invalid_request"
