"""Issue 14: today's original's configuration (contract B5) loads unchanged: several named provider
instances, each pool's provider and DNS domain (`dns_configs`, `dns_plugin`), the v3 `:config:` keys. Keys
we accept but do not use are named in one warning; unknown keys stay errors."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import make_config
from vmpooler_core.errors import ConfigError

# A configuration in today's original's format, every section of contract B5 (Ruby symbol keys included).
HEAD_EXAMPLE = """\
---
:providers:
  :vsphere-pdx:
    provider_class: 'vsphere'
    server: 'vsphere.pdx.example.com'
    username: 'vmpooler-pdx'
    password: 'swimsw1msw!m'
    insecure: true
    datacenter: 'pdx'
    connection_pool_size: 5
    connection_pool_timeout: 60
    purge_unconfigured_resources: false
    resources_allowlist: ['keep']
    skip_dns_check_before_creating_vm: true
  :vsphere-bfs:
    provider_class: 'vsphere'
    server: 'vsphere.bfs.example.com'
    username: 'vmpooler-bfs'
    password: 'swimsw1msw!m'
  :dummy:
    filename: '/tmp/dummy-backing.yaml'
    connection_pool_size: 1
    createvm_max_time: 10
    createvm_fail_percent: 5
    vmready_fail_percent: 0
:redis:
  server: 'redis.example.com'
  port: 6379
  password: 'r3dis'
  data_ttl: 168
  connection_pool_size: 10
  connection_pool_timeout: 5
  reconnect_attempts: 10
:prometheus:
  prefix: 'vmpooler'
  prometheus_prefix: 'vmpooler'
  prometheus_endpoint: '/prometheus'
:graphs:
  server: 'graphite.example.com'
  prefix: 'vmpooler'
:auth:
  provider: 'ldap'
  :ldap:
    host: 'ldap.example.com'
    port: 389
    base: ['ou=users,dc=example,dc=com', 'ou=service,dc=example,dc=com']
    user_object: ['uid', 'cn']
    service_account_hash:
      :user_dn: 'cn=svc,dc=example,dc=com'
      :password: 'svc'
:tracing:
  enabled: 'false'
  jaeger_host: 'http://jaeger.example.com:14268/api/traces'
:tagfilter:
  url: '(.*)\\/'
:dns_configs:
  :example:
    dns_class: dynamic-dns
    domain: 'example.com'
  :gcp-pdx:
    dns_class: gcp
    domain: 'pdx.example.com'
    project: 'vmpooler-dns'
    zone_name: 'pdx'
:config:
  site_name: 'vmpooler'
  logfile: '/var/log/vmpooler.log'
  task_limit: 10
  ondemand_clone_limit: 10
  max_ondemand_instances_per_request: 10
  migration_limit: 5
  vm_checktime: 1
  vm_lifetime: 12
  vm_lifetime_auth: 24
  max_lifetime_upper_limit: 168
  ready_ttl: 60
  ondemand_request_ttl: 5
  timeout: 15
  timeout_notification: 5
  prefix: 'poolvm-'
  clone_target: 'cluster1'
  max_tries: 3
  retry_factor: 10
  create_folders: false
  create_template_delta_disks: false
  create_linked_clones: true
  experimental_features: true
  usage_stats: false
  request_logger: false
  purge_unconfigured_resources: false
  allowed_tags: ['created_by', 'project']
  backend_weight: {'cluster1': 60, 'cluster2': 40}
  check_loop_delay_min: 5
  check_loop_delay_max: 60
  check_loop_delay_decay: 2.0
  check_ready_vm_hostname_for_mismatch: true
  max_vm_retries: 3
  dlq_enabled: true
  dlq_ttl: 168
  dlq_max_entries: 10000
  purge_enabled: false
  purge_dry_run: true
  max_pending_age: 7200
  max_ready_age: 86400
  health_check_enabled: true
  health_thresholds: {pending_queue_max: 100}
  circuit_breaker_enabled: true
  adaptive_timeout_enabled: true
  connection_pool_monitor_enabled: true
  rate_limiting_enabled: false
:pools:
  - name: 'debian-12-x86_64'
    alias: [ 'debian-12-64', 'debian-12-amd64' ]
    template: 'Templates/debian-12-x86_64'
    folder: 'Pooled VMs/debian-12-x86_64'
    datastore: 'vmstorage'
    size: 5
    timeout: 15
    timeout_notification: 5
    ready_ttl: 1440
    provider: 'vsphere-pdx'
    dns_plugin: 'gcp-pdx'
    clone_target: 'cluster2'
    datacenter: 'pdx'
    network: 'VM Network'
    create_linked_clone: true
    snapshot_mainMem_ioBlockPages: 2048
    check_loop_delay_min: 10
    check_hostname_for_mismatch: false
  - name: 'centos-7-x86_64'
    alias: 'centos-7-64'
    template: 'Templates/centos-7-x86_64'
    folder: 'Pooled VMs/centos-7-x86_64'
    datastore: 'vmstorage'
    size: 0
    provider: 'vsphere-bfs'
    dns_plugin: 'example'
  - name: 'pool-dummy'
    size: 2
    provider: 'dummy'
    dns_plugin: 'example'
"""


def test_todays_original_configuration_loads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vmpooler.config")
    cfg = make_config(HEAD_EXAMPLE)
    assert {name: p.kind for name, p in cfg.providers.items()} == {
        "vsphere-pdx": "vsphere", "vsphere-bfs": "vsphere", "dummy": "dummy"}
    assert cfg.providers["vsphere-pdx"].options["password"].reveal() == "swimsw1msw!m"
    debian, centos, dummy = cfg.pools
    assert (debian.provider, debian.domain, debian.clone_target) == ("vsphere-pdx", "pdx.example.com", "cluster2")
    assert (centos.provider, centos.domain, centos.alias) == ("vsphere-bfs", "example.com", ("centos-7-64",))
    assert (dummy.provider, dummy.domain) == ("dummy", "example.com")
    assert cfg.aliases["debian-12-amd64"] == ("debian-12-x86_64",)
    assert cfg.app.experimental_features and cfg.app.prefix == "poolvm-" and cfg.app.domain is None
    assert cfg.auth is not None and cfg.auth.ldap is not None and cfg.auth.ldap.user_object == ("uid", "cn")
    assert set(cfg.dns_configs) == {"example", "gcp-pdx"}
    [warning] = [r.getMessage() for r in caplog.records if r.name == "vmpooler.config"]
    # One warning: the keys we do not use, the DNS plugin's included (we manage no DNS records).
    for key in ("dns_configs.gcp-pdx.dns_class", "dns_configs.gcp-pdx.project", "config.dlq_enabled",
                "config.dlq_ttl", "tracing",
                "prometheus", "providers.vsphere-pdx.connection_pool_size", "pools[0].network"):
        assert key in warning, key
    for used in ("dns_configs.example", "dns_plugin", "experimental_features", "pools[0].clone_target"):
        assert used not in warning, used


def test_the_2016_domain_is_the_domain_of_pools_without_a_dns_plugin() -> None:
    cfg = make_config("config: {domain: company.com}\ndns_configs:\n  one: {dns_class: dynamic-dns, domain: "
                      "one.example.com}\nproviders: {dummy: {}}\npools:\n  - {name: a, size: 1, dns_plugin: one}\n"
                      "  - {name: b, size: 1}\n")
    assert (cfg.pool("a").domain, cfg.pool("b").domain) == ("one.example.com", "company.com")


@pytest.mark.parametrize(("text", "key", "message"), [
    ("dns_configs:\n  one: {dns_class: dynamic-dns, domian: example.com}\n", "dns_configs.one.domian",
     "did you mean `domain`? (domain is required)"),
    ("dns_configs:\n  one: {dns_class: dynamic-dns, domain: 'example .com'}\n", "dns_configs.one.domain",
     "is not a DNS domain"),
    ("dns_configs:\n  one: {domain: example.com}\n", "dns_configs.one.dns_class", "is required"),
    ("dns_configs:\n  one: {dns_class: dynamic-dns, domain: example.com, zone: z}\n", "dns_configs.one.zone",
     "unknown key"),  # dynamic-dns has no settings but its domain
    ("dns_configs:\n  one: {dns_class: dynamic-dns, domain: example.com}\nproviders: {dummy: {}}\n"
     "pools:\n  - {name: a, size: 1, dns_plugin: onw}\n", "pools[0].dns_plugin",
     "no dns_configs entry named 'onw', did you mean `one`?"),
    ("config: {experimental_feature: true}\n", "config.experimental_feature", "did you mean `experimental_features`?"),
])
def test_mistakes_in_the_v3_keys_are_errors(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(text)
    assert raised.value.key == key and message in str(raised.value), str(raised.value)
