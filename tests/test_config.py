from __future__ import annotations

import re

import pytest

from tests.conftest import make_config
from vmpooler_core import config_loader
from vmpooler_core.errors import ConfigError

ERA_A = """\
---
:vsphere:
  server: 'vsphere.company.com'
  username: 'vmpooler'
  password: 'swordfish'
:redis:
  server: 'redis.company.com'
:statsd:
  server: 'statsd.company.com'
  prefix: 'vmpooler'
  port: 8125
:graphite:
  server: 'graphite.company.com'
:auth:
  provider: 'ldap'
  :ldap:
    host: 'ldap.company.com'
    port: 389
    base: 'ou=users,dc=company,dc=com'
    user_object: 'uid'
:tagfilter:
  url: '(.*)\\/'
:config:
  site_name: 'vmpooler'
  logfile: '/var/log/vmpooler.log'
  task_limit: 10
  timeout: 15
  vm_checktime: 15
  vm_lifetime: 12
  vm_lifetime_auth: 24
  allowed_tags:
    - 'created_by'
    - 'project'
  domain: 'company.com'
  prefix: 'poolvm-'
:pools:
  - name: 'centos-6-x86_64'
    alias: [ 'centos-6-amd64', 'centos-6-64' ]
    template: 'templates/centos-6-x86_64'
    folder: 'vmpooler/centos-6-x86_64'
    datastore: 'instance1'
    size: 5
  - name: 'debian-7-i386'
    alias: 'debian-7-32'
    template: 'templates/debian-7-i386'
    folder: 'vmpooler/debian-7-i386'
    datastore: 'instance1'
    size: 5
  - name: 'win-2012'
    template: 'templates/win-2012'
    folder: 'vmpooler/win-2012'
    size: 0
"""


def test_era_a_config_with_colon_keys_loads() -> None:
    cfg = make_config(ERA_A)
    assert [p.name for p in cfg.pools] == ["centos-6-x86_64", "debian-7-i386", "win-2012"]
    assert cfg.pool("centos-6-x86_64").alias == ("centos-6-amd64", "centos-6-64")
    assert cfg.pool("debian-7-i386").alias == ("debian-7-32",)  # a string alias becomes a tuple
    assert cfg.pool("win-2012").alias == ()
    assert cfg.pool_names == {"centos-6-x86_64", "centos-6-amd64", "centos-6-64", "debian-7-i386",
                              "debian-7-32", "win-2012"}
    assert cfg.aliases["centos-6-64"] == ("centos-6-x86_64",)
    assert cfg.candidates("centos-6-64") == ("centos-6-x86_64",)
    assert cfg.candidates("win-2012") == ("win-2012",)
    assert cfg.app.domain == "company.com" and cfg.app.prefix == "poolvm-"
    assert cfg.app.vm_lifetime == 12 and cfg.app.vm_lifetime_auth == 24
    assert cfg.app.allowed_tags == ("created_by", "project")
    assert cfg.redis.server == "redis.company.com"
    assert cfg.providers["vsphere"].kind == "vsphere"
    assert cfg.pool("win-2012").provider == "vsphere"  # legacy vsphere section: pools live there
    assert cfg.auth is not None and cfg.auth.ldap is not None and cfg.auth.ldap.base == ("ou=users,dc=company,dc=com",)
    assert cfg.tagfilter["url"].match("foo.com/something.html")


def test_statsd_wins_over_graphite() -> None:
    cfg = make_config(ERA_A)
    assert cfg.metrics.statsd is not None and cfg.metrics.statsd.server == "statsd.company.com"
    assert cfg.metrics.graphite is None


def test_graphite_alone_and_defaults() -> None:
    cfg = make_config("graphite:\n  server: g.example\n")
    assert cfg.metrics.statsd is None
    assert cfg.metrics.graphite is not None and cfg.metrics.graphite.port == 2003
    assert cfg.metrics.graphite.prefix == "vmpooler"


def test_keys_without_colons_are_the_same() -> None:
    plain = make_config(ERA_A.replace("\n:", "\n").replace("  :ldap:", "  ldap:"))
    assert plain.pool_names == make_config(ERA_A).pool_names
    assert plain.metrics == make_config(ERA_A).metrics


def test_alias_naming_several_pools() -> None:
    cfg = make_config("providers: {dummy: {}}\n"
                      "pools:\n - {name: a, alias: generic, size: 1}\n - {name: b, alias: [generic], size: 1}\n")
    assert cfg.aliases["generic"] == ("a", "b")
    assert cfg.candidates("generic") == ("a", "b")


def test_no_config_at_all_is_empty() -> None:
    cfg = config_loader.load(env={})
    assert cfg.pools == () and cfg.pool_names == frozenset()


def test_passwords_never_shown() -> None:
    cfg = make_config(ERA_A)
    text = repr(cfg) + str(cfg.providers["vsphere"]) + cfg.redis.describe()
    assert "swordfish" not in text
    assert cfg.providers["vsphere"].options["password"].reveal() == "swordfish"
    with_url = make_config("redis:\n  url: redis://:hunter2@example:6379/0\n  password: hunter3\n")
    assert "hunter2" not in with_url.redis.describe() and "hunter3" not in repr(with_url)


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("pools:\n  - name: a\n    size: 1\n  - name: a\n    size: 2\n", 4, "pools[1].name", "duplicate pool name"),
    ("pools:\n  - name: a\n    size: -1\n", 3, "pools[0].size", "must be >= 0"),
    ("pools:\n  - name: a\n    size: lots\n", 3, "pools[0].size", "whole number"),
    ("vsphere:\n  server: vc\npools:\n  - name: a\n    size: 1\n    folder: f\n", 4, "pools[0].template",
     "is required"),
    ("providers:\n  vsphere:\n    server: vc\npools:\n  - name: a\n    provider: vsphere\n    size: 1\n"
     "    template: t/a\n", 5, "pools[0].folder", "is required"),
    ("tagfilter:\n  url: '(.*'\n", 2, "tagfilter.url", "does not compile"),
    ("pools:\n  - name: a\n    size: 1\n    provider: nowhere\n", 4, "pools[0].provider", "unknown provider"),
    ("config:\n  task_limit: 0\n", 2, "config.task_limit", "must be >= 1"),
    ("statsd:\n  port: 8125\n", 1, "statsd.server", "is required"),
])
def test_bad_config_names_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(text)
    assert err.value.line == line, str(err.value)
    assert err.value.key == key
    assert message in str(err.value)
    assert str(err.value).startswith(f"test.yaml:{line}: {key}: ")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as err:
        make_config("pools:\n  - name: a\n    size: [1\n")
    assert err.value.line is not None and err.value.line >= 3
    assert "invalid YAML" in str(err.value)


def test_error_from_a_file_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "vmpooler.yaml"
    path.write_text("pools:\n  - name: a\n    size: -3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:3: pools[0].size")):
        config_loader.load(path, env={})
    with pytest.raises(ConfigError, match="cannot read configuration"):
        config_loader.load(tmp_path / "missing.yaml", env={})


def test_env_overrides_win_and_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text("config:\n  task_limit: 3\n  domain: a.com\nproviders: {dummy: {}}\n"
                    "pools:\n  - {name: p, size: 1}\n")
    cfg = config_loader.load(env={"VMPOOLER_CONFIG_FILE": str(path), "VMPOOLER_TASK_LIMIT": "7",
                                  "VMPOOLER_DOMAIN": "b.com", "VMPOOLER_REDIS_URL": "redis://h:1/2",
                                  "VMPOOLER_STATSD_SERVER": "s.example"})
    assert cfg.app.task_limit == 7 and cfg.app.domain == "b.com"
    assert cfg.redis.url == "redis://h:1/2"
    assert cfg.metrics.statsd is not None and cfg.metrics.statsd.server == "s.example"
    with pytest.raises(ConfigError, match="environment VMPOOLER_TASK_LIMIT: config.task_limit: must be a whole"):
        config_loader.load(path, env={"VMPOOLER_TASK_LIMIT": "many"})


def test_vmpooler_config_env_may_hold_the_yaml_document() -> None:
    cfg = config_loader.load(env={"VMPOOLER_CONFIG": "pools:\n  - {name: p, size: 2, provider: dummy}\n"})
    assert cfg.pool("p").size == 2


def test_config_is_frozen() -> None:
    cfg = make_config(ERA_A)
    with pytest.raises(AttributeError):
        cfg.app.task_limit = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.aliases["x"] = ("y",)  # type: ignore[index]


def test_the_example_config_loads() -> None:
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "vmpooler.yaml.example"
    cfg = config_loader.load(path, env={})
    assert cfg.metrics.statsd is not None and cfg.metrics.graphite is None
    assert cfg.candidates("centos-6-64") == ("centos-6-x86_64",)
    assert cfg.pool("demo").provider == "dummy" and cfg.pool("debian-7-i386").alias == ("debian-7-32",)
    assert "swordfish" not in repr(cfg)
