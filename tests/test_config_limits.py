"""The `rate_limits:` section and `config: max_vms_per_token`: defaults, every accepted form, the
original's names, and errors that name the file, line and key."""

from __future__ import annotations

import pytest

from tests.conftest import make_config
from vmpooler_core.config import DEFAULT_RATE_LIMITS, ClassLimits, Rate
from vmpooler_core.errors import ConfigError


def test_off_by_default_with_the_originals_limits() -> None:
    cfg = make_config("pools: []\n")
    assert cfg.rate_limits.enabled is False
    assert cfg.rate_limits.classes == DEFAULT_RATE_LIMITS
    assert cfg.rate_limits.classes["checkout"] == ClassLimits(Rate(20, 60), Rate(20, 60))
    assert cfg.rate_limits.classes["other"] == ClassLimits(Rate(500, 60), Rate(100, 60))
    assert cfg.rate_limits.address_header is None
    assert cfg.app.max_vms_per_token is None


@pytest.mark.parametrize(("text", "env"), [
    ("rate_limits:\n  enabled: true\n", {}),
    (":config:\n  :rate_limiting_enabled: true\n", {}),  # the original's switch, in its symbol form
    ("", {"VMPOOLER_RATE_LIMITING_ENABLED": "true"}),
])
def test_enabled_by_the_section_the_originals_switch_or_the_environment(text: str, env: dict[str, str]) -> None:
    assert make_config(text, **env).rate_limits.enabled is True


def test_the_sections_switch_wins_over_the_originals() -> None:
    cfg = make_config("config:\n  rate_limiting_enabled: true\nrate_limits:\n  enabled: false\n")
    assert cfg.rate_limits.enabled is False


def test_every_form_of_a_class() -> None:
    cfg = make_config("""
rate_limits:
  checkout:
    per_token: {limit: 5, period: 10}
    per_address: {limit: 0}
  return: {limit: 7}
  address_header: X-Forwarded-For
""")
    classes = cfg.rate_limits.classes
    assert classes["checkout"] == ClassLimits(Rate(5, 10), Rate(0, 60))  # period defaults to 60 s
    assert classes["return"] == ClassLimits(Rate(7, 60), Rate(7, 60))  # one {limit, period} sets both
    assert classes["other"] == DEFAULT_RATE_LIMITS["other"]  # untouched classes keep their defaults
    assert cfg.rate_limits.address_header == "x-forwarded-for"


def test_the_originals_names() -> None:
    cfg = make_config("""
:rate_limits:
  :vm_creation: {limit: 1, period: 2}
  :vm_deletion: {limit: 3, period: 4}
  :authenticated: {limit: 5, period: 6}
  :global_per_ip: {limit: 7, period: 8}
""")
    classes = cfg.rate_limits.classes
    assert classes["checkout"] == ClassLimits(Rate(1, 2), Rate(1, 2))
    assert classes["return"] == ClassLimits(Rate(3, 4), Rate(3, 4))
    assert classes["other"] == ClassLimits(Rate(5, 6), Rate(7, 8))


@pytest.mark.parametrize(("text", "where", "message"), [
    ("rate_limits:\n  enabled: true\n  chekout: {limit: 1}\n", "test.yaml:3: rate_limits.chekout",
     "unknown key"),
    ("rate_limits:\n  checkout:\n    per_user: {limit: 1}\n", "test.yaml:3: rate_limits.checkout.per_user",
     "unknown key"),
    ("rate_limits:\n  other:\n    per_token: {period: 5}\n", "test.yaml:3: rate_limits.other.per_token.limit",
     "is required"),
    ("rate_limits:\n  return: {limit: -1}\n", "test.yaml:2: rate_limits.return.limit", "must be >= 0"),
    ("rate_limits:\n  return: {limit: 1, period: 0}\n", "test.yaml:2: rate_limits.return.period",
     "must be >= 1"),
    ("rate_limits:\n  return: 5\n", "test.yaml:2: rate_limits.return", "must be a mapping"),
    ("rate_limits:\n  vm_creation: {limit: 1}\n  checkout: {limit: 2}\n", "test.yaml:3: rate_limits.checkout",
     "that `vm_creation` sets too"),
    ("rate_limits:\n  address_header: 'X Forwarded'\n", "test.yaml:2: rate_limits.address_header",
     "is not an HTTP header name"),
    ("rate_limits:\n  enabled: maybe\n", "test.yaml:2: rate_limits.enabled", "must be true or false"),
    ("config:\n  max_vms_per_token: 0\n", "test.yaml:2: config.max_vms_per_token", "must be >= 1"),
])
def test_errors_name_the_file_line_and_key(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(text)
    assert str(err.value).startswith(where + ": "), str(err.value)
    assert message in str(err.value)


def test_max_vms_per_token_from_the_file_or_the_environment() -> None:
    assert make_config("config:\n  max_vms_per_token: 3\n").app.max_vms_per_token == 3
    assert make_config("", VMPOOLER_MAX_VMS_PER_TOKEN="4").app.max_vms_per_token == 4
    with pytest.raises(ConfigError) as err:
        make_config("", VMPOOLER_MAX_VMS_PER_TOKEN="many")
    assert "environment VMPOOLER_MAX_VMS_PER_TOKEN" in str(err.value)
