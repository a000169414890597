"""The seams (vmpooler_core/seams.py): VMPOOLER_STOCK, detection of a changed library, one log line each."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from vmpooler_core import seams
from vmpooler_core.seams import Seams, lacks, refuses


class Lines:
    """The seams' log lines so far, as (level, message)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __call__(self) -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in self.caplog.records if r.name == "vmpooler.seams"]


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[Lines]:
    with caplog.at_level(logging.DEBUG, logger="vmpooler.seams"):
        yield Lines(caplog)


@pytest.fixture(autouse=True)
def a_second_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project has one seam today (scripts); a second, made up here, shows that seams are chosen
    each on its own."""
    monkeypatch.setattr(seams, "NAMES", frozenset({"scripts", "other"}))


@pytest.mark.parametrize(("value", "stock"), [
    ("", set()),
    ("0", set()),
    ("scripts", {"scripts"}),
    (" scripts , Other,", {"scripts", "other"}),
    ("all", {"scripts", "other"}),
    ("ALL", {"scripts", "other"}),
    ("1", {"scripts", "other"}),
    ("other,all", {"scripts", "other"}),
])
def test_the_environment_names_the_stock_seams(value: str, stock: set[str]) -> None:
    assert Seams.from_env({"VMPOOLER_STOCK": value}).stock == stock


def test_no_variable_is_every_fast_path() -> None:
    assert Seams.from_env({}).stock == frozenset()


def test_a_name_that_is_no_seam_is_said_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vmpooler.seams"):
        chosen = Seams.from_env({"VMPOOLER_STOCK": "script,other"})
    assert chosen.stock == {"other"}
    assert [r.getMessage() for r in caplog.records] == [
        "VMPOOLER_STOCK names no seam script (the seams: other, scripts); ignored"]


def test_the_fast_path_when_nothing_stands_against_it(lines: Lines) -> None:
    assert Seams().fast("scripts", lambda: None)
    assert lines() == [(logging.INFO, "seam scripts: fast path (the installed library has what it needs)")]


def test_the_stock_path_when_the_operator_names_the_seam_and_nothing_is_detected(
        lines: Lines) -> None:
    asked: list[str] = []

    def detect() -> str | None:
        asked.append("detect")
        return None

    chosen = Seams.from_env({"VMPOOLER_STOCK": "other"})
    assert not chosen.fast("other", detect)
    assert chosen.fast("scripts", detect), "the other seams keep their fast path"
    assert asked == ["detect"], "the stock seam's detection is not run"
    assert lines()[0] == (logging.INFO, "seam other: stock path, because VMPOOLER_STOCK names it")


def test_a_detected_change_takes_the_stock_path_with_a_warning(lines: Lines) -> None:
    assert not Seams().fast("other", lambda: "otherlib.Thing has no method")
    assert lines() == [(logging.WARNING, "seam other: stock path, because the installed library changed: "
                                         "otherlib.Thing has no method")]


def test_a_detector_that_fails_is_a_detected_change(lines: Lines) -> None:
    def detect() -> str | None:
        raise AttributeError("'NoneType' object has no attribute 'connection_class'")

    assert not Seams().fast("scripts", detect)
    assert lines() == [(logging.WARNING, "seam scripts: stock path, because the installed library changed: "
                                         "detection failed (AttributeError: 'NoneType' object has no attribute "
                                         "'connection_class')")]


def test_each_seam_is_chosen_and_logged_once(lines: Lines) -> None:
    asked: list[str] = []

    def detect() -> str | None:
        asked.append("detect")
        return None if len(asked) == 1 else "changed meanwhile"

    chosen = Seams()
    assert [chosen.fast("other", detect) for _ in range(5)] == [True] * 5
    assert asked == ["detect"]
    assert len(lines()) == 1


def test_the_process_seams_are_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seams.process_seams.cache_clear()
    try:
        monkeypatch.setenv("VMPOOLER_STOCK", "other")
        first = seams.process_seams()
        monkeypatch.setenv("VMPOOLER_STOCK", "all")
        assert seams.process_seams() is first and first.stock == {"other"}
    finally:
        monkeypatch.undo()
        seams.process_seams.cache_clear()  # the next caller reads the real environment


class Library:
    """Stands for a third-party class a fast path calls into."""

    version = 2

    def send(self, data: bytes, *, flush: bool = True) -> None: ...

    @staticmethod
    def pack(*parts: object) -> bytes:
        return b""


def test_lacks_names_what_is_missing() -> None:
    assert lacks(Library, "version", "send") is None
    assert lacks(Library, "version", "recv", "peek") == "tests.test_seams.Library has no recv, peek"
    assert lacks(logging, "getLogger") is None
    assert lacks(logging, "nosuch") == "logging has no nosuch"


def test_refuses_checks_a_call_against_the_signature() -> None:
    assert refuses(Library, "send", b"x") is None, "self is added for a method looked up on the class"
    assert refuses(Library(), "send", b"x", flush=False) is None
    assert refuses(Library, "pack", "EVALSHA", 0) is None, "a static method has no self"
    reason = refuses(Library, "send", b"x", nowait=True)
    assert reason is not None and reason.startswith("tests.test_seams.Library.send(self, data: 'bytes', *, "
                                                    "flush: 'bool' = True) -> 'None' does not take the call")
    assert "nowait" in reason
    assert refuses(Library, "recv") == "tests.test_seams.Library has no recv"
    assert refuses(Library, "version") == "tests.test_seams.Library.version is not callable"
