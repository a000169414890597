"""Parsing the Lua scripts' replies (vmpooler_core/replies.py): every known shape becomes its type, and a
shape this code does not know is a clear UnexpectedReply, never an IndexError. The scripts' real replies
are checked by the tests of each operation (test_checkout, test_ratelimit, test_inventory, manager/...)."""

from __future__ import annotations

from typing import Any

import pytest

from vmpooler_core import replies
from vmpooler_core.replies import (
    BadToken,
    CheckedOut,
    Counted,
    Durations,
    Empty,
    Forgotten,
    Kept,
    NoSuchVm,
    NotOwner,
    NotRunning,
    OverRate,
    PoolFigures,
    Reservation,
    Returned,
    TooMany,
    UnexpectedReply,
)


def test_checkout_replies() -> None:
    assert replies.checkout(["ok", "poolone", "pool1", "vm1", "pool2", "pool2", "vm2"]) == CheckedOut(
        (("poolone", "pool1", "vm1"), ("pool2", "pool2", "vm2")))
    assert replies.checkout(["empty", "pool2"]) == Empty("pool2")
    assert replies.checkout(["unauthorized"]) == BadToken()
    assert replies.checkout(["toomany", 3, 4]) == TooMany(3, 4)
    assert replies.checkout(["ratelimited", 3, 60000, 1, 1_700_000_000_001]) == OverRate(3, 60000, 1,
                                                                                         1_700_000_000_001)


def test_return_and_rate_replies() -> None:
    assert replies.returned(["ok", "pool1"]) == Returned("pool1")
    assert replies.returned(["notfound"]) == NoSuchVm()
    assert replies.returned(["unauthorized", "pool1"]) == NotOwner("pool1")
    assert replies.returned(["notrunning", "pool1"]) == NotRunning("pool1")
    assert replies.returned(["ratelimited", 1, 1000, 5, 6]) == OverRate(1, 1000, 5, 6)
    assert replies.rate(["ok"]) == Counted()
    assert replies.rate(["ratelimited", 1, 1000, 5, 6]) == OverRate(1, 1000, 5, 6)


def test_the_managers_replies() -> None:
    assert [replies.reservation(code) for code in (1, 0, -1, -2)] == [
        Reservation.RESERVED, Reservation.TAKEN, Reservation.FULL, Reservation.LEASE_LOST]
    assert replies.forgotten(2) == Forgotten(2) and replies.forgotten(0) == Forgotten(0)
    assert replies.forgotten(-1) == Kept()
    assert replies.moved(1) is True and replies.moved(0) is False
    assert replies.leases([1, 0, 1], ["a", "b", "c"]) == {"a", "c"}
    assert replies.discovered(["x", "y"]) == ["x", "y"] and replies.present([]) == []
    assert replies.token_user("jdoe") == "jdoe" and replies.token_user(None) is None


def test_status_layout() -> None:
    reply = ["2", "3", "61.5", "10", "31.5", "0", "0", "0", "0", "4", "1", "2", "0", "", "", "0", "0", "0", "7", "",
             ""]
    figures = replies.status(reply, ["pool1", "pool2"])
    assert figures.cloning == 2
    assert figures.boot == Durations(3, 61.5, 10.0, 31.5) and figures.clone == Durations(0, 0.0, 0.0, 0.0)
    assert figures.pools == {"pool1": PoolFigures(4, 1, 2, 0), "pool2": PoolFigures(0, 0, 0, 7)}


@pytest.mark.parametrize(("parse", "reply"), [
    (replies.checkout, []), (replies.checkout, ["ok", "poolone", "pool1"]), (replies.checkout, ["empty"]),
    (replies.checkout, ["toomany", "x", 4]), (replies.checkout, ["ratelimited", 1]), (replies.checkout, "ok"),
    (replies.checkout, ["ok", "a", "b", 3]), (replies.checkout, ["nosuchanswer"]), (replies.checkout, None),
    (replies.returned, ["ok"]), (replies.returned, ["gone", "pool1"]), (replies.rate, ["ok", "extra"]),
    (replies.reservation, 2), (replies.reservation, "ok"), (replies.forgotten, -2), (replies.forgotten, None),
    (replies.moved, 2), (replies.discovered, "host"), (replies.discovered, [1]), (replies.token_user, 1),
])
def test_an_unknown_shape_is_a_clear_error(parse: Any, reply: object) -> None:
    with pytest.raises(UnexpectedReply, match="a reply this code does not know"):
        parse(reply)


def test_unknown_lease_and_status_shapes() -> None:
    with pytest.raises(UnexpectedReply, match="lease.lua"):
        replies.leases([1], ["a", "b"])
    with pytest.raises(UnexpectedReply, match="status.lua"):
        replies.status(["0"] * 12, ["pool1"])
    with pytest.raises(UnexpectedReply, match="status.lua"):
        replies.status(["0"] * 8 + ["x"] + ["0"] * 4, ["pool1"])
