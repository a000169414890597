"""Issue 14: `EXTRA_CONFIG` / `config: extra_config` files are merged into the main configuration file as
today's original merges them (contract B5, B8.8: an extra file's providers and pools are added, the main
file's `:config:` stays), and an error in a key from an extra file names that file and its line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vmpooler_core import config_loader
from vmpooler_core.errors import ConfigError

MAIN = """\
---
:providers:
  :dummy:
    filename: '/tmp/dummy-backing.yaml'
:config:
  task_limit: 5
  experimental_features: false
  extra_config: '{extras}'
:pools:
  - name: 'pool01'
    size: 5
    provider: 'dummy'
  - name: 'pool02'
    size: 5
    provider: 'dummy'
"""
EXTRA1 = """\
---
:providers:
  :dummy2:
    provider_class: dummy
:config:
  task_limit: 99
  vm_lifetime: 7
:pools:
  - name: 'pool02'
    size: 5
    provider: 'dummy'
  - name: 'pool03'
    size: 5
    provider: 'dummy2'
  - name: 'pool04'
    size: 1
    provider: 'dummy2'
"""
EXTRA2 = """\
:config:
  experimental_features: true
  vm_lifetime: 8
:pools:
  - name: 'pool05'
    size: 2
    provider: 'dummy'
"""


def write(tmp_path: Path, **files: str) -> dict[str, str]:
    paths = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def test_extra_files_add_pools_and_providers_keeping_the_main_files_settings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    extras = write(tmp_path, extra1=EXTRA1, extra2=EXTRA2)
    paths = write(tmp_path, main=MAIN.format(extras=f"{extras['extra1']},{extras['extra2']}"))
    cfg = config_loader.load(paths["main"], env={})
    # pool02 is in the main file and, identical, in extra1: once.
    assert [p.name for p in cfg.pools] == ["pool01", "pool02", "pool03", "pool04", "pool05"]
    assert set(cfg.providers) == {"dummy", "dummy2"} and cfg.pool("pool03").provider == "dummy2"
    # The main file's values win; a key it does not set comes from the first extra file that does; and, as
    # in the original, a false value is not kept.
    assert (cfg.app.task_limit, cfg.app.vm_lifetime, cfg.app.experimental_features) == (5, 7, True)
    assert not [r for r in caplog.records if "extra_config" in r.getMessage()]  # read, not an unused key


def test_the_environment_names_the_extra_files_instead(tmp_path: Path) -> None:
    extras = write(tmp_path, extra2=EXTRA2)
    paths = write(tmp_path, main=MAIN.format(extras=str(tmp_path / "missing.yaml")))
    for variable in ("EXTRA_CONFIG", "VMPOOLER_EXTRA_CONFIG"):
        cfg = config_loader.load(paths["main"], env={variable: extras["extra2"]})
        assert [p.name for p in cfg.pools] == ["pool01", "pool02", "pool05"]


def test_errors_in_an_extra_file_name_it_and_its_line(tmp_path: Path) -> None:
    bad = EXTRA2.replace("size: 2", "size: -2").replace("vm_lifetime: 8", "vm_lifetim: 8")
    extras = write(tmp_path, extra1=EXTRA1, extra2=bad)
    paths = write(tmp_path, main=MAIN.format(extras=f"{extras['extra1']},{extras['extra2']}"))
    with pytest.raises(ConfigError) as err:
        config_loader.load(paths["main"], env={})
    assert (err.value.source, err.value.line, err.value.key) == (extras["extra2"], 6, "pools[4].size")
    fixed = bad.replace("size: -2", "size: 2")
    Path(extras["extra2"]).write_text(fixed)
    with pytest.raises(ConfigError) as err:
        config_loader.load(paths["main"], env={})
    assert (err.value.source, err.value.line, err.value.key) == (extras["extra2"], 3, "config.vm_lifetim")
    assert "did you mean `vm_lifetime`" in str(err.value)
    # A pool named again with other settings: both places named.
    Path(extras["extra2"]).write_text(EXTRA2.replace("pool05", "pool01"))
    with pytest.raises(ConfigError, match=r"duplicate pool name 'pool01' \(first at .*main.yaml:10\)") as err:
        config_loader.load(paths["main"], env={})
    assert (err.value.source, err.value.line) == (extras["extra2"], 5)


def test_a_missing_extra_file_is_an_error_naming_where_it_was_named(tmp_path: Path) -> None:
    paths = write(tmp_path, main=MAIN.format(extras=str(tmp_path / "missing.yaml")))
    with pytest.raises(ConfigError, match="missing.yaml.*No such file") as err:
        config_loader.load(paths["main"], env={})
    assert (err.value.source, err.value.line, err.value.key) == (paths["main"], 8, "config.extra_config")
    with pytest.raises(ConfigError, match="^environment EXTRA_CONFIG: cannot read .*nowhere.yaml"):
        config_loader.load(paths["main"], env={"EXTRA_CONFIG": str(tmp_path / "nowhere.yaml")})


def test_a_document_in_the_environment_merges_no_extra_files(tmp_path: Path) -> None:
    # As the original: only a configuration file has extra files.
    extras = write(tmp_path, extra1=EXTRA1)
    cfg = config_loader.load(env={"VMPOOLER_CONFIG": MAIN.format(extras=extras["extra1"])})
    assert [p.name for p in cfg.pools] == ["pool01", "pool02"]
