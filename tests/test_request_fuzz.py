"""Hypothesis over the request parsers: any JSON value or path string gives a request or a clear
InvalidRequest/NotFound, never anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import POOLS_YAML, make_config
from vmpooler_core import vms
from vmpooler_core.errors import InvalidRequest, NotFound
from vmpooler_core.request import from_mapping, from_path, validate

CONFIG = make_config(POOLS_YAML)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)
names = st.sampled_from(["pool1", "pool2", "poolone", "nope", "", "a b", "x" * 300, "é", "../etc"]) | st.text()


@settings(max_examples=1000, deadline=None)
@given(body=json_values | st.dictionaries(names, json_values, max_size=5))
def test_json_bodies(body: object) -> None:
    try:
        request = from_mapping(body)
        validate(request, CONFIG)
    except (InvalidRequest, NotFound) as err:
        assert str(err)
        return
    assert 0 < request.total <= CONFIG.app.max_checkout_per_request
    assert all(CONFIG.is_known(name) for name in request.names())


@settings(max_examples=1000, deadline=None)
@given(spec=st.text(max_size=300) | st.lists(names, max_size=6).map("+".join))
def test_path_forms(spec: str) -> None:
    try:
        request = from_path(spec)
        validate(request, CONFIG)
    except (InvalidRequest, NotFound) as err:
        assert str(err)
        return
    assert request.total == len(spec.split("+"))


@settings(max_examples=1000, deadline=None)
@given(body=json_values | st.dictionaries(st.sampled_from(["lifetime", "tags", "x"]), json_values, max_size=3))
def test_vm_modifications(body: object) -> None:
    try:
        change = vms.parse_modification(body, CONFIG)
    except InvalidRequest as err:
        assert str(err)
        return
    assert change.lifetime is None or change.lifetime > 0
    assert change.tags is None or all(isinstance(v, str) for v in change.tags.values())
