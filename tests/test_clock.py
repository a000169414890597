"""Time stamps in the original's `Time#to_s` form, and reading back every form it has written."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from vmpooler_core import clock


def test_stamp_is_the_originals_form_in_utc() -> None:
    assert clock.stamp(0) == "1970-01-01 00:00:00 +0000"
    assert clock.stamp(1469443412.9) == "2016-07-25 10:43:32 +0000"
    assert clock.stamp(-0.5) == "1969-12-31 23:59:59 +0000", "floored, like the datetime it stands for"


def test_the_current_second_is_remembered_but_never_served_for_another() -> None:
    now = time.time()
    assert clock.stamp() == clock.stamp(now) or clock.stamp() == clock.stamp(now + 1)
    assert clock.stamp(now - 3600) != clock.stamp(now), "a cached stamp is not returned for another second"


@given(st.floats(min_value=-1e9, max_value=4e9), st.floats(min_value=-1e9, max_value=4e9))
def test_stamps_in_any_order_read_back_to_their_second(first: float, second: float) -> None:
    for epoch in (first, second, first):
        assert clock.parse(clock.stamp(epoch)) == float(int(epoch // 1))
