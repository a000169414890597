"""Issue 12, reports 1 and 2: a typo is an error naming file:line:key with the nearest valid key; the
original vmpooler's keys we do not use load with one warning; each provider kind declares its options;
a pool's provider is the one it names, else the only one configured, else an error, never the dummy
provider by default."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_config
from vmpooler_core import config_loader
from vmpooler_core.errors import ConfigError
from vmpooler_core.provider_options import PROVIDER_KINDS

ROOT = Path(__file__).resolve().parent.parent
VSPHERE = "providers:\n  vsphere: {server: vc.example, username: u, password: p}\n"


def error_of(text: str, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        make_config(text, **env)
    return raised.value


def unused_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vmpooler.config" and r.levelno == logging.WARNING]


# Report 1: a pool without `provider:` in a config whose `:providers:` names only vSphere -----------

def test_report_1_a_pool_without_provider_uses_the_only_configured_one_never_the_dummy() -> None:
    cfg = make_config(VSPHERE + "pools:\n  - {name: a, size: 2, template: t/a, folder: vmpooler/a}\n")
    assert cfg.pool("a").provider == "vsphere"
    assert set(cfg.providers) == {"vsphere"}  # no dummy provider is built beside it
    # Without the keys a vSphere pool needs it is an error, not a pool of fake VMs.
    err = error_of(VSPHERE + "pools:\n  - {name: a, size: 2}\n")
    assert (err.line, err.key) == (4, "pools[0].template") and "is required" in str(err)


def test_the_era_a_vsphere_section_is_the_only_provider_too() -> None:
    cfg = make_config(":vsphere:\n  server: vc\n:pools:\n  - {name: a, size: 1, template: t/a, folder: f}\n")
    assert cfg.pool("a").provider == "vsphere" and set(cfg.providers) == {"vsphere"}


# Report 2: typos are errors naming file, line and key, with a hint -------------------------------

@pytest.mark.parametrize(("text", "line", "key", "hint"), [
    # `:pool:` for `:pools:`: today a daemon with no pools.
    (":providers:\n  :dummy: {}\n:pool:\n  - {name: a, size: 1}\n", 3, "pool", "pools"),
    ("config:\n  task_limt: 3\n", 2, "config.task_limt", "task_limit"),
    # `:rediss:`: today localhost:6379.
    (":rediss:\n  server: redis.example\n", 1, "rediss", "redis"),
    (VSPHERE + "pools:\n  - name: a\n    size: 1\n    template: t/a\n    folder: f\n    datastor: ds1\n", 8,
     "pools[0].datastor", "datastore"),
    ("providers:\n  vsphere:\n    server: vc\n    usernme: vmpooler\n", 4, "providers.vsphere.usernme", "username"),
])
def test_report_2_a_typo_is_an_error_with_file_line_key_and_hint(text: str, line: int, key: str, hint: str) -> None:
    err = error_of(text)
    assert (err.source, err.line, err.key) == ("test.yaml", line, key)
    assert str(err) == f"test.yaml:{line}: {key}: unknown key; did you mean `{hint}`?"


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    # A misspelt required key is reported as the typo, not as the missing key.
    ("providers: {dummy: {}}\npools:\n  - {name: a, sze: 1}\n", 3, "pools[0].sze",
     "unknown key; did you mean `size`? (size is required)"),
    # A misspelt `providers:` is the mistake to report, not the pool that then has no provider.
    (":provider:\n  :vsphere: {server: vc}\npools:\n  - {name: a, size: 1}\n", 1, "provider",
     "unknown key; did you mean `providers`?"),
    # Deeper levels: a Sentinel address, LDAP, rate limits, the dashboard's graphs.
    ("redis:\n  sentinels: [{host: h, prot: 26379}]\n  master: m\n", 2, "redis.sentinels[0].prot",
     "did you mean `port`?"),
    ("auth:\n  provider: ldap\n  ldap: {host: h, bsae: 'ou=x'}\n", 3, "auth.ldap.bsae", "did you mean `base`?"),
    ("rate_limits:\n  chekout: {limit: 1}\n", 2, "rate_limits.chekout", "did you mean `checkout`?"),
    ("graphs: {server: g, prefx: v}\n", 1, "graphs.prefx", "did you mean `prefix`?"),
    # Nothing close: no hint, still an error.
    ("redis:\n  server: r\nwhatever: 1\n", 3, "whatever", "unknown key"),
])
def test_unknown_keys_at_every_level(text: str, line: int, key: str, message: str) -> None:
    err = error_of(text)
    assert (err.line, err.key) == (line, key), str(err)
    assert message in str(err)


def test_several_unknown_keys_are_named_in_one_error_the_first_in_the_file_first() -> None:
    err = error_of("foo: 1\nconfig:\n  task_limt: 3\n  vm_lifetme: 2\n")
    assert (err.line, err.key) == (1, "foo")
    assert "also unknown: config.task_limt, config.vm_lifetme" in str(err)


# The original's keys we do not use ---------------------------------------------------------------

ORIGINAL_TODAY = """\
:redis:
  server: 'redis.company.com'
  connection_pool_size: 10
  reconnect_attempts: 5
:prometheus:
  prefix: 'vmpooler'
:dns_configs:
  :example:
    dns_class: dynamic-dns
    domain: 'example.com'
:config:
  task_limit: 10
  ondemand_clone_limit: 10
  dlq_enabled: true
  create_linked_clones: true
:auth:
  provider: 'ldap'
  :ldap:
    host: 'ldap.company.com'
    service_account_hash: {user_dn: 'cn=svc', password: 'x'}
:providers:
  :dummy:
    filename: '/tmp/dummy-backing.yaml'
    createvm_fail_percent: 5
    purge_unconfigured_resources: true
  :vsphere:
    server: 'vc.company.com'
    connection_pool_size: 4
:pools:
  - name: 'pool01'
    size: 2
    provider: 'dummy'
    dns_plugin: 'example'
  - name: 'pool02'
    size: 1
    provider: 'vsphere'
    template: 'templates/pool02'
    folder: 'vmpooler/pool02'
    network: 'VM Network'
    snapshot_mainMem_ioBlockPages: 2048
"""


def test_the_originals_unused_keys_load_with_one_warning_naming_them_all(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    cfg = make_config(ORIGINAL_TODAY)
    assert cfg.pool("pool01").provider == "dummy" and cfg.pool("pool02").provider == "vsphere"
    assert cfg.redis.server == "redis.company.com" and cfg.app.task_limit == 10
    [warning] = unused_warnings(caplog)
    for key in ("redis.connection_pool_size", "redis.reconnect_attempts", "prometheus",
                "config.ondemand_clone_limit", "config.dlq_enabled", "config.create_linked_clones",
                "auth.ldap.service_account_hash", "providers.dummy.filename",
                "providers.dummy.createvm_fail_percent", "providers.dummy.purge_unconfigured_resources",
                "providers.vsphere.connection_pool_size", "pools[1].network",
                "pools[1].snapshot_mainMem_ioBlockPages"):
        assert key in warning, key
    # Issue 14: `dns_configs` and `dns_plugin` name each pool's domain (API v3's host names): used now.
    assert "dns_" not in warning
    assert cfg.pool("pool01").domain == "example.com" and cfg.pool("pool02").domain is None
    assert "task_limit" not in warning.replace("ondemand_clone_limit", "")
    # Unused keys do not reach the providers.
    assert "filename" not in cfg.providers["dummy"].options


def test_a_config_with_only_keys_we_use_loads_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    make_config(VSPHERE + "pools:\n  - {name: a, size: 1, template: t/a, folder: f}\n")
    config_loader.load(ROOT / "examples" / "vmpooler.yaml.example", env={})
    assert unused_warnings(caplog) == []


def test_an_era_a_vsphere_section_shadowed_by_providers_is_named_in_the_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    cfg = make_config(":vsphere:\n  server: old\n:providers:\n  :vsphere:\n    server: new\n")
    assert cfg.providers["vsphere"].options["server"] == "new"
    assert unused_warnings(caplog) == ["test.yaml: keys of the original vmpooler that this one does not use, "
                                       "ignored: vsphere"]


def test_an_unused_key_of_another_provider_kind_is_still_an_error() -> None:
    # `network` is the original's vSphere pool option: on a dummy pool it means nothing.
    err = error_of("providers: {dummy: {}}\npools:\n  - {name: a, size: 1, network: n}\n")
    assert (err.line, err.key) == (3, "pools[0].network") and "unknown key" in str(err)


# Provider options --------------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "key", "message"), [
    ("dummy: {boot_tme: 2}", "providers.dummy.boot_tme", "did you mean `boot_time`?"),
    ("dummy: {clone_fail_percent: 101}", "providers.dummy.clone_fail_percent", "percentage from 0 to 100"),
    ("dummy: {clone_time: -1}", "providers.dummy.clone_time", "must be >= 0"),
    ("dummy: {ready_check: ping}", "providers.dummy.ready_check", "must be one of tcp, hostname, none"),
    ("dummy: {server: vc}", "providers.dummy.server", "unknown key"),  # a vSphere option
    ("vsphere: {server: vc, port: https}", "providers.vsphere.port", "must be a whole number"),
    ("vsphere: {server: vc, insecure: maybe}", "providers.vsphere.insecure", "must be true or false"),
    ("vsphere: {server: vc, connections: 0}", "providers.vsphere.connections", "must be >= 1"),
    ("vsphere: {server: vc, clone_time: 1}", "providers.vsphere.clone_time", "unknown key"),  # a dummy option
    ("vsphere: {username: u}", "providers.vsphere.server", "is required"),
    ("vsphere: {sever: vc}", "providers.vsphere.sever", "did you mean `server`? (server is required)"),
    ("vc2: {provider_class: vsphre, server: vc}", "providers.vc2",
     "unknown provider 'vsphre', did you mean `vsphere`?"),
])
def test_provider_options_are_checked_against_the_kinds_declaration(entry: str, key: str, message: str) -> None:
    err = error_of(f"providers:\n  {entry}\n")
    assert (err.line, err.key) == (2, key), str(err)
    assert message in str(err)


def test_declared_options_reach_the_provider() -> None:
    cfg = make_config("providers:\n  vc2: {provider_class: vsphere, server: vc, user: u, password: p, "
                      "insecure: true, timeout: 5, connections: 4, datacenter: dc, clone_timeout: 60, "
                      "ready_check: hostname}\n  fake: {provider_class: dummy, clone_time: 0, guest_ip: 10.0.0.1}\n")
    assert cfg.providers["vc2"].kind == "vsphere" and cfg.providers["vc2"].options["datacenter"] == "dc"
    assert cfg.providers["vc2"].options["password"].reveal() == "p"
    assert cfg.providers["fake"].kind == "dummy" and cfg.providers["fake"].options["guest_ip"] == "10.0.0.1"


def _options_read(path: Path) -> set[str]:
    """Option names a provider's source reads: options.get("x"), options["x"], f(options, "x")."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "options":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                found.add(node.slice.value)
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "options":
            found.update(a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str))
        elif any(isinstance(a, ast.Name) and a.id == "options" for a in node.args):
            found.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return found


@pytest.mark.parametrize(("kind", "sources"), [
    ("dummy", ["dummy.py"]),
    ("vsphere", ["vsphere.py", "vsphere_session.py"]),
])
def test_each_provider_reads_exactly_the_options_it_declares(kind: str, sources: list[str]) -> None:
    """The declaration (vmpooler_core, checked by the loader) and the provider's reads cannot drift."""
    read = set().union(*(_options_read(ROOT / "vmpoolerd" / "providers" / name) for name in sources))
    assert read == PROVIDER_KINDS[kind].names()


# Which provider a pool uses ----------------------------------------------------------------------

def test_a_pool_uses_the_provider_it_names() -> None:
    cfg = make_config(VSPHERE + "  dummy: {}\npools:\n  - {name: a, size: 1, provider: dummy}\n"
                      "  - {name: b, size: 1, provider: vsphere, template: t/b, folder: f}\n")
    assert (cfg.pool("a").provider, cfg.pool("b").provider) == ("dummy", "vsphere")


def test_with_several_providers_a_pool_must_name_one() -> None:
    err = error_of(VSPHERE + "  dummy: {}\npools:\n  - {name: a, size: 1}\n")
    assert (err.line, err.key) == (5, "pools[0].provider")
    assert err.reason == "pool a names no provider and there are 2: vsphere, dummy; add `provider:` to the pool"
    # The era-A section counts as a configured provider too.
    err = error_of(":vsphere:\n  server: vc\n:providers:\n  :dummy: {}\n:pools:\n  - {name: a, size: 1}\n")
    assert "there are 2: dummy, vsphere" in err.reason


def test_the_dummy_provider_only_when_named() -> None:
    # No provider configured: an error, not fake VMs.
    err = error_of("pools:\n  - {name: a, size: 1}\n")
    assert err.key == "pools[0].provider" and "names no provider and none is configured" in err.reason
    # Named by the pool: the dummy provider with its defaults.
    cfg = make_config("pools:\n  - {name: a, size: 1, provider: dummy}\n")
    assert cfg.pool("a").provider == "dummy" and cfg.providers["dummy"].kind == "dummy"
    # Named as the only provider.
    assert make_config("providers:\n  dummy: {}\npools:\n  - {name: a, size: 1}\n").pool("a").provider == "dummy"
    # Otherwise there is none.
    assert "dummy" not in make_config(VSPHERE).providers
    err = error_of(VSPHERE + "pools:\n  - {name: a, size: 1, provider: fake}\n")
    assert err.reason == "unknown provider 'fake' (configured: vsphere)"
    err = error_of(VSPHERE + "pools:\n  - {name: a, size: 1, provider: vshpere}\n")
    assert err.reason == "unknown provider 'vshpere', did you mean `vsphere`? (configured: vsphere)"


def test_the_demo_configuration_names_its_dummy_provider() -> None:
    from vmpoolerd.embedded import demo_config_text

    cfg = config_loader.load(text=demo_config_text("unix:///tmp/x.sock"), env={})
    assert {p.provider for p in cfg.pools} == {"dummy"} and set(cfg.providers) == {"dummy"}


# Environment overrides ---------------------------------------------------------------------------

def test_environment_overrides_still_work_and_are_not_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "vmpooler.yaml"
    path.write_text("config:\n  task_limit: 3\nproviders: {dummy: {}}\npools:\n  - {name: p, size: 1}\n")
    cfg = config_loader.load(path, env={"VMPOOLER_TASK_LIMIT": "7", "VMPOOLER_REDIS_SERVER": "r.example",
                                        "VMPOOLER_REDIS_PORT": "6380", "VMPOOLER_GRAPHITE_SERVER": "g.example",
                                        "VMPOOLER_RATE_LIMITING_ENABLED": "true"})
    assert cfg.app.task_limit == 7 and (cfg.redis.server, cfg.redis.port) == ("r.example", 6380)
    assert cfg.metrics.graphite is not None and cfg.rate_limits.enabled
    # An override does not excuse a typo in the file.
    path.write_text("config:\n  task_limt: 3\n")
    with pytest.raises(ConfigError, match=r"vmpooler.yaml:2: config.task_limt: unknown key; did you mean"):
        config_loader.load(path, env={"VMPOOLER_TASK_LIMIT": "7"})


# The daemon --------------------------------------------------------------------------------------

def run_daemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmpoolerd", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())


def test_vmpoolerd_with_a_typo_exits_78_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(":providers:\n  :dummy: {}\n:pool:\n  - {name: a, size: 1}\n")
    done = run_daemon("--config", str(bad))
    assert done.returncode == 78, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vmpoolerd: error: {bad}:3: pool: unknown key; did you mean `pools`?"]
    checked = run_daemon("--check", "--config", str(bad))
    assert checked.returncode == 78 and f"{bad}:3: pool: unknown key" in checked.stderr


def test_vmpoolerd_names_the_originals_unused_keys_on_stderr_once(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(f"redis: {{url: '{redis_url}', connection_pool_size: 4}}\n"
                      "config: {ondemand_clone_limit: 3}\nproviders: {dummy: {}}\npools:\n  - {name: a, size: 1}\n")
    done = run_daemon("--check", "--config", str(config))  # no manager runs: the verdict is 1
    assert done.returncode == 1 and '"ok": false' in done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if "does not use" in line]
    assert lines == [f"{config}: keys of the original vmpooler that this one does not use, ignored: "
                     "redis.connection_pool_size, config.ondemand_clone_limit"]
