"""Issue 15: the demand forecast (vmpooler_core/demand.py), the configuration that opts a pool in, and the
API's counts in Redis (lua/demand.lua inside the checkout and on-demand scripts)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis

from tests.conftest import make_config
from vmpooler_core import demand
from vmpooler_core.checkout import Checkout
from vmpooler_core.demand import FLOOR, MAX_SIZE, RING, Counts, Forecast, Target
from vmpooler_core.errors import ConfigError, NoCapacity
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.ondemand import Part
from vmpooler_core.ondemand_store import RequestStore
from vmpooler_core.request import CheckoutRequest

K = Keys()
WIDTH = 60.0


def wanted(history: list[int], refill: float = 120.0, elapsed: float = 60.0,
           refused: dict[int, int] | None = None, usual: int = 0) -> Forecast:
    """The forecast of VMs checked out per minute (`history`), and refused in some minutes (`refused`)."""
    counts = [Counts(served=n, refused=(refused or {}).get(i, 0)) for i, n in enumerate(history)]
    return demand.forecast(counts, WIDTH, elapsed, refill, usual)


def test_no_demand_keeps_the_floor() -> None:
    idle = wanted([0] * 90)
    assert idle.wanted == 0 and idle.rate == 0.0
    assert demand.bounded(idle, 2, 20, 0.0) == Target(2, FLOOR, 2, 20, 0.0, 0, 120.0, 0.0)


def test_a_steady_rate_asks_for_what_one_refill_takes_plus_a_margin() -> None:
    steady = wanted([3] * 90)  # 3 VMs a minute; a refill takes 2 minutes: 6 VMs meanwhile
    assert steady.rate == pytest.approx(3)
    assert 6 + 1.65 * 6 ** 0.5 <= steady.wanted <= 6 + 1.65 * 6 ** 0.5 + 1.5


def test_a_rising_rate_is_met_ahead_of_its_peak() -> None:
    # A morning ramp: one more VM a minute every minute, 10 a minute in the last one. Carried one refill
    # ahead, the forecast expects more than the latest minute's 10 (and more than 10 a minute held flat).
    ramp = wanted([0] * 80 + list(range(1, 11)))
    flat = wanted([0] * 80 + [10] * 10)
    assert flat.rate == pytest.approx(10)
    assert ramp.rate > 10.5 and ramp.wanted > flat.wanted


def test_a_burst_is_remembered_until_the_window_passes_it() -> None:
    burst = [0] * 90
    burst[5] = 14  # 14 VMs asked for within one minute, 85 minutes ago
    assert wanted(burst).peak == 14 and wanted(burst).wanted >= 14
    assert wanted(burst[6:] + [0] * 6).wanted == 0  # slid out of the window


def test_what_the_pool_usually_wants_at_this_hour_is_grown_to_ahead_of_it() -> None:
    monday_9h = 24 * 7 * 10 + 9  # hour numbers
    profile = {monday_9h - 24: 14, monday_9h - 24 + 1: 3}  # Sunday 9h (14 wanted) and 10h; no week before
    assert demand.usual(profile, [monday_9h]) == 14 and demand.usual(profile, [monday_9h, monday_9h + 1]) == 14
    # With last week's figures, the lower of the two: last Monday's 2 wins over Sunday's 14.
    assert demand.usual({**profile, monday_9h - 7 * 24: 2}, [monday_9h]) == 2
    assert demand.usual({}, [monday_9h]) == 0
    forecast = wanted([0] * 90, usual=14)
    assert forecast.wanted == 14 and "usually 14 at this hour" in demand.bounded(forecast, 1, 40, 0.0).why
    # The figures live beside the ring, in the same hash, one field per hour of eight days.
    raw = {"5": "1005 2 1 0", demand.profile_field(monday_9h): f"{monday_9h} 6", "h3": "junk"}
    assert demand.read_profile(raw) == {monday_9h: 6} and demand.read_ring(raw, 1005, 1) == [Counts(2, 1, 0)]
    assert demand.profile_field(monday_9h) == demand.profile_field(monday_9h + 8 * 24)


def test_refused_checkouts_count_once_for_the_clients_left_waiting() -> None:
    # Four clients refused at 10:00 retry every minute and get their VMs one by one: 4, 3, 2, 1 refusals
    # and four checkouts are the same four clients, not fourteen.
    retried = wanted([0] * 85 + [0, 1, 1, 1, 1], refused={85: 4, 86: 3, 87: 2, 88: 1})
    assert retried.peak == 4


def test_bounds_max_size_and_a_floor_set_above_it() -> None:
    rush = wanted([30] * 90)
    assert demand.bounded(rush, 2, 20, 0.0).size == 20 and demand.bounded(rush, 2, 20, 0.0).limit == MAX_SIZE
    # A size set through the API above max_size pins the pool at it.
    assert demand.bounded(wanted([0] * 90), 25, 20, 0.0).size == 25


def test_ring_slots_of_older_buckets_and_foreign_values_count_as_nothing() -> None:
    raw = {"5": "1005 2 1 0", "6": "750 9 9 9", "7": "1007 x 1 1", "8": "1008 1 0 3"}
    assert demand.read_ring(raw, 1008, 4) == [Counts(2, 1, 0), Counts(), Counts(), Counts(1, 0, 3)]


def test_refill_time_is_a_mean_without_the_outliers() -> None:
    assert demand.refill_time([]) is None
    assert demand.refill_time([100, 120]) == 110
    # Stamps are whole seconds: the mean of many of 0 and 1 s is near the truth; the slowest fifth is left out.
    assert 0.5 < demand.refill_time([0, 1, 1, 0, 1, 1, 0, 1, 1, 900]) < 1  # type: ignore[operator]


def test_refill_time_is_measured_on_the_last_vms_made_ready_each_once() -> None:
    samples = demand.RefillSamples()
    assert samples.time() is None
    # A pool at a floor of one: the same ready VM seen at every pass is one sample, not one per pass, and
    # its whole-second stamps (0 s for a clone of 0.6 s) are averaged with the VMs made ready before it.
    for host, seconds in (("a", 1.0), ("b", 1.0), ("c", 0.0), ("b", 1.0), ("d", 1.0)):
        samples.add(host, seconds)
    for _ in range(10):
        samples.add("e", 0.0)
    assert samples.time() == pytest.approx(2 / 3)  # 0 1 1 1 0 without the fifth at each end: 1, 1, 0
    # Only the last REFILL_SAMPLES VMs count: clones that got slower move the refill time along.
    for n in range(demand.REFILL_SAMPLES):
        samples.add(f"slow{n}", 300.0)
    assert samples.time() == 300.0 and len(samples.kept) == demand.REFILL_SAMPLES
    samples.add("clock-stepped-back", -5.0)
    assert "clock-stepped-back" not in samples.kept


def test_a_target_record_reads_back_and_junk_reads_as_none() -> None:
    target = Target(7, "demand", 2, 20, 3.25, 6, 95.0, 1_750_000_000.0)
    assert Target.from_json(target.to_json()) == target
    assert Target.from_json(dataclasses.replace(target, usual=4).to_json()) == dataclasses.replace(target, usual=4)
    assert "sized to demand" in target.why and "3.2 VMs/min" in target.why
    for junk in (None, "", "[]", '{"limit": "floor"}', json.dumps({**json.loads(target.to_json()), "limit": "?"})):
        assert Target.from_json(junk) is None


# The configuration ------------------------------------------------------------------------------

def pools_yaml(pool: str, top: str = "", provider: str = "") -> str:
    return f"{top}:providers:\n  :dummy:\n    clone_time: 0\n{provider}:pools:\n  - name: pool1\n    size: 2\n{pool}"


def test_max_size_opts_a_pool_in() -> None:
    config = make_config(pools_yaml("    max_size: 9\n", ":demand:\n  bucket_seconds: 2\n  window_seconds: 30\n",
                                    "    max_vms: 40\n"))
    assert config.pool("pool1").max_size == 9 and config.demand_pools == {"pool1"}
    assert config.demand.bucket_seconds == 2 and config.demand.window_seconds == 30
    assert config.providers["dummy"].max_vms == 40 and config.demand_width == 2
    plain = make_config(pools_yaml(""))
    assert plain.pool("pool1").max_size is None and plain.demand_width is None


@pytest.mark.parametrize(("text", "message"), [
    (pools_yaml("    max_size: 1\n"), "max_size: must be at least the pool's size, 2"),
    (pools_yaml("    max_size: 4\n", ":demand:\n  bucket: 2\n"), "unknown key"),
    (pools_yaml("    max_size: 4\n", ":demand:\n  window_seconds: 999999\n"), "window_seconds: must be from 2 to"),
    (pools_yaml("    max_size: 4\n", ":demand:\n  bucket_seconds: 0\n"), "bucket_seconds: must be at least"),
    (pools_yaml("    max_size: 4\n", provider="    max_vms: 0\n"), "max_vms"),
])
def test_bad_demand_settings_are_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(text)


# The counts --------------------------------------------------------------------------------------

COUNTED = """
:demand: {bucket_seconds: 3600, window_seconds: 36000}
:providers: {dummy: {}}
:pools:
  - {name: pool1, size: 1, max_size: 5, alias: [either]}
  - {name: pool2, size: 1}
"""


def ring(sync_redis: redis.Redis, pool: str) -> list[int]:
    """The served, refused and on-demand counts of the pool's only bucket."""
    values = list(sync_redis.hgetall(K.demand(pool)).values())
    assert len(values) <= 1, "one bucket only: the test's buckets are an hour wide"
    return [int(n) for n in values[0].split()[1:]] if values else [0, 0, 0]


async def test_checkouts_refusals_and_on_demand_requests_are_counted(inventory: Inventory,
                                                                     sync_redis: redis.Redis) -> None:
    config = make_config(COUNTED)
    checkout = Checkout(config, inventory, NullMetrics())
    sync_redis.sadd(K.ready("pool1"), "a1", "a2")
    sync_redis.sadd(K.ready("pool2"), "b1")
    await checkout.take(CheckoutRequest((("pool1", 1), ("pool2", 1))))
    await checkout.take(CheckoutRequest((("either", 1),)))  # an alias: counted against the pool that served
    assert ring(sync_redis, "pool1") == [2, 0, 0] and ring(sync_redis, "pool2") == [1, 0, 0]
    with pytest.raises(NoCapacity):  # pool1 is empty: its 3 VMs asked for are demand all the same
        await checkout.take(CheckoutRequest((("pool1", 3),)))
    assert ring(sync_redis, "pool1") == [2, 3, 0]
    await RequestStore(inventory).submit("r1", (Part("pool1", "pool1", 4),), 0, demand=config.demand_width)
    assert ring(sync_redis, "pool1") == [2, 3, 4]
    bucket, *_ = sync_redis.hvals(K.demand("pool1"))[0].split()
    slot, = sync_redis.hkeys(K.demand("pool1"))
    assert int(slot) == int(bucket) % RING and int(bucket) == int(sync_redis.time()[0] // 3600)


async def test_nothing_is_counted_without_a_pool_sized_to_demand(inventory: Inventory,
                                                                 sync_redis: redis.Redis) -> None:
    config = make_config(COUNTED.replace(", max_size: 5", ""))
    sync_redis.sadd(K.ready("pool1"), "a1")
    await Checkout(config, inventory, NullMetrics()).take(CheckoutRequest((("pool1", 1),)))
    assert not sync_redis.exists(K.demand("pool1"))
