"""Issue 20's failover figures, asserted: two `vmpoolerd all` daemons on a Sentinel group under load
(bench/failover.py runs the scenarios and prints the README's table), through a planned failover
(`SENTINEL FAILOVER`) and a `kill -9` of the primary, each with and without `durability: replica`.

- A planned failover: no acknowledged checkout lost, no VM handed out twice, no 500, in every mode
  (report 1: before, 93 checkouts were lost and 16 VMs handed out twice).
- A killed primary: with `durability: none` a checkout answered without a slow replica's confirmation
  in the instant before the kill may be lost (asynchronous replication): the figures are printed, not
  asserted; with `durability: replica`, none.
- min-replicas-to-write on the servers (report 2): 503s while the primary lacks its replica, never 500.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.failover import Figures, run

pytestmark = pytest.mark.slow


def _report(figures: Figures) -> None:
    print("\n" + figures.line())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("durability", ["none", "replica"])
def test_a_planned_failover_loses_nothing(tmp_path: Path, durability: str) -> None:
    figures = run("planned", durability, tmp_path)
    _report(figures)
    assert not figures.lost, figures.line()
    assert not figures.twice, figures.line()
    assert not figures.errors_500, figures.line()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("durability", ["none", "replica"])
def test_a_killed_primary(tmp_path: Path, durability: str) -> None:
    figures = run("kill", durability, tmp_path)
    _report(figures)
    assert not figures.errors_500, figures.line()
    if durability == "replica":
        assert not figures.lost, figures.line()
        assert not figures.twice, figures.line()


@pytest.mark.timeout(120)
def test_min_replicas_to_write_gives_503_not_500(tmp_path: Path) -> None:
    figures = run("planned", "none", tmp_path, min_replicas=True)
    _report(figures)
    assert not figures.errors_500, figures.line()
    assert not figures.lost and not figures.twice, figures.line()
    assert figures.answers.get("503 backend_unavailable"), "the refusals were answered 503"
