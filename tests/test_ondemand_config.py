"""The on-demand keys of `config:` (the original's names and defaults) and the choice of a pool for each VM
asked of an alias (`backend_weight`)."""

from __future__ import annotations

import random

import pytest

from tests.conftest import make_config
from vmpooler_core import ondemand
from vmpooler_core.errors import ConfigError, InvalidRequest, UnknownPool

POOLS = """
providers: {dummy: {}}
pools:
  - {name: a, size: 0, clone_target: c1, alias: [both]}
  - {name: b, size: 0, clone_target: c2, alias: [both]}
  - {name: c, size: 0, alias: [loose]}
  - {name: d, size: 0, clone_target: c1, alias: [loose]}
"""


def test_defaults_are_the_originals() -> None:
    settings = make_config(POOLS).ondemand
    assert (settings.max_instances_per_request, settings.request_ttl, settings.max_vm_retries) == (10, 5, 3)
    assert dict(settings.backend_weight) == {}


def test_values_and_environment() -> None:
    config = make_config(":config:\n  max_ondemand_instances_per_request: 50\n  ondemand_request_ttl: 30\n"
                         "  max_vm_retries: 0\n  backend_weight: {c1: 5, c2: 0}\n" + POOLS,
                         VMPOOLER_ONDEMAND_REQUEST_TTL="7")
    settings = config.ondemand
    assert (settings.max_instances_per_request, settings.request_ttl, settings.max_vm_retries) == (50, 7, 0)
    assert dict(settings.backend_weight) == {"c1": 5, "c2": 0}


@pytest.mark.parametrize(("text", "where"), [
    ("config:\n  backend_weight: {c1: -1}\n", "test.yaml:2: config.backend_weight.c1: must be >= 0"),
    ("config:\n  backend_weight: [c1]\n", "test.yaml:2: config.backend_weight: must be a mapping"),
    ("config:\n  ondemand_request_ttl: 0\n", "test.yaml:2: config.ondemand_request_ttl: must be >= 1"),
    ("config:\n  ondemand_request_tll: 5\n", "ondemand_request_tll: unknown key; did you mean `ondemand_request_ttl`?"),
])
def test_bad_values_name_the_line_and_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(text + POOLS)
    assert where in str(err.value)


def test_weights_choose_the_pool_of_each_vm() -> None:
    config = make_config("config:\n  backend_weight: {c1: 3, c2: 0}\n" + POOLS)
    rng = random.Random(1)
    assert ondemand.parts(ondemand.Wanted((("both", 50),)), config, rng) == (ondemand.Part("both", "a", 50),)
    # `c` has no clone target, so `loose` has no full set of weights: each VM to either pool, at random.
    spread = ondemand.parts(ondemand.Wanted((("loose", 50), ("a", 1))), config, rng)
    assert {part.pool for part in spread if part.alias == "loose"} == {"c", "d"}
    assert sum(part.count for part in spread) == 51 and spread[-1] == ondemand.Part("a", "a", 1)
    assert ondemand.decode(ondemand.encode(spread)) == spread


def test_what_a_request_may_ask() -> None:
    config = make_config(POOLS)
    assert ondemand.from_mapping({"a": "2", "both": 1, "request_id": "r-1"}) == ondemand.Wanted(
        (("a", 2), ("both", 1)), "r-1")
    with pytest.raises(UnknownPool):
        ondemand.validate(ondemand.from_mapping({"a": 1, "zz": 1}), config)
    with pytest.raises(ondemand.TooManyInstances):
        ondemand.validate(ondemand.from_mapping({"a": 11}), config)
    for bad in ({"a": 0}, {"a": "1", "request_id": "x:y"}, {}):
        with pytest.raises(InvalidRequest):
            ondemand.validate(ondemand.from_mapping(bad), config)
