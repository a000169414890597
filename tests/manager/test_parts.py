"""The manager's parts on their own: hostnames, ready checks, the dummy provider, its configuration."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
import redis

from tests.conftest import make_config
from tests.manager.conftest import on_redis, power_off_by_hand
from tests.redis_server import free_port
from vmpooler_core.config import RedisSettings
from vmpooler_core.errors import ConfigError
from vmpooler_core.keys import Keys
from vmpooler_core.provider import CloneSpec, Provider, ProviderError, VmFacts
from vmpooler_core.redis_client import connect_blocking
from vmpoolerd.manager.hostnames import new_hostname
from vmpoolerd.manager.readiness import Probe
from vmpoolerd.providers import build_providers, close_providers
from vmpoolerd.providers.dummy import DummyProvider


def test_hostnames() -> None:
    names = {new_hostname("ci-") for _ in range(2000)}
    assert len(names) == 2000
    assert all(re.fullmatch(r"ci-[a-y][a-z0-9]{14}", name) for name in names)


async def test_probe_hostname_and_none() -> None:
    on = VmFacts("vm1", powered_on=True, guest_hostname="vm1.example.com")
    assert await Probe("hostname").booted("vm1", on) is None
    assert await Probe("hostname").booted("vm2", on) == "guest hostname is vm1"
    assert await Probe("hostname").booted("vm1", VmFacts("vm1", True)) == "guest hostname is not reported"
    assert await Probe("hostname").still_ready("vm1", VmFacts("vm1", True)) is None, "tools restarting"
    assert await Probe("none").booted("vm1", VmFacts("vm1", True)) is None
    assert await Probe("none").booted("vm1", VmFacts("vm1", False)) == "powered off"


async def test_probe_tcp_on_guest_ip() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        facts = VmFacts("no-such-host-vmpooler", powered_on=True, guest_ip="127.0.0.1")
        assert await Probe("tcp", port=port, timeout=2).booted("no-such-host-vmpooler", facts) is None
        closed = Probe("tcp", port=free_port(), timeout=2)
        reason = await closed.booted("no-such-host-vmpooler", facts)
        assert reason and reason.startswith("port closed") and "127.0.0.1" in reason
    finally:
        server.close()
        await server.wait_closed()


async def test_probe_tcp_on_hostname_with_domain() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        # "localhost" + no domain resolves; the check connects to <host>.<domain> when a domain is set.
        assert await Probe("tcp", port=port).booted("localhost", VmFacts("localhost", True)) is None
        probe = Probe("tcp", port=port, domain="invalid", timeout=2)
        assert await probe.booted("localhost", VmFacts("localhost", True)) is not None
    finally:
        listener.close()


def dummy(sync_redis: redis.Redis, **options: object) -> DummyProvider:
    config = make_config(":providers:\n  :dummy:\n" + "".join(f"    {k}: {v}\n" for k, v in options.items())
                         + ":pools:\n  - name: p\n    size: 1\n    folder: f\n")
    return DummyProvider(config.providers["dummy"], sync_redis, config.pool_index)


def test_dummy_provider_lifecycle(sync_redis: redis.Redis) -> None:
    provider = dummy(sync_redis, clone_time=0, boot_time=60)
    assert isinstance(provider, Provider)
    provider.clone("p", CloneSpec("vm1", "t", "f"))
    facts = provider.list_vms("p", "f")["vm1"]
    assert facts.powered_on and facts.guest_hostname is None, "still booting"
    provider.clock = lambda: 1e12  # far in the future: booted
    assert provider.list_vms("p", "f")["vm1"].guest_hostname == "vm1"
    with pytest.raises(ProviderError):
        provider.clone("p", CloneSpec("vm1", "t", "f"))
    provider.snapshot("p", "vm1", "s1")
    provider.revert("p", "vm1", "s1")
    with pytest.raises(ProviderError):
        provider.revert("p", "vm1", "nope")
    provider.add_disk("p", "vm1", 8, None)
    power_off_by_hand(sync_redis, "f", "vm1")
    assert not provider.list_vms("p", "f")["vm1"].powered_on
    # The VMs live in Redis: another provider object (a restarted daemon) sees the same.
    assert set(dummy(sync_redis).list_vms("p", "f")) == {"vm1"}
    provider.destroy("p", "vm1")
    provider.destroy("p", "vm1")
    assert provider.list_vms("p", "f") == {}


def test_dummy_provider_reads_partial_and_foreign_records(sync_redis: redis.Redis) -> None:
    """A record with fields missing takes their defaults; a hash field that is not a record is a VM that
    is off, and one the provider cannot act on."""
    provider = dummy(sync_redis)
    folder = Keys().dummy_folder("dummy", "f")
    sync_redis.hset(folder, mapping={"partial": '{"on": true, "boots_at": 0}', "foreign": "not json",
                                     "listed": '["on"]'})
    facts = provider.list_vms("p", "f")
    assert facts["partial"].powered_on and facts["partial"].guest_hostname == "partial"
    assert not facts["foreign"].powered_on and not facts["listed"].powered_on
    provider.add_disk("p", "partial", 4, None)
    assert json.loads(sync_redis.hget(folder, "partial") or "{}")["disks"] == [4]
    with pytest.raises(ProviderError, match="dummy: no VM foreign"):
        provider.snapshot("p", "foreign", "s1")


def test_dummy_provider_failure_rates(sync_redis: redis.Redis) -> None:
    failing = dummy(sync_redis, clone_time=0, clone_fail_percent=100, destroy_fail_percent=100)
    with pytest.raises(ProviderError):
        failing.clone("p", CloneSpec("vm1", "t", "f"))
    assert failing.list_vms("p", "f") == {}
    working = dummy(sync_redis, clone_time=0, boot_time=0, ready_fail_percent=100)
    working.clone("p", CloneSpec("vm1", "t", "f"))
    assert working.list_vms("p", "f")["vm1"].guest_hostname is None, "never reports its hostname"
    with pytest.raises(ProviderError):
        failing.destroy("p", "vm1")


def test_build_providers_and_the_blocking_client(redis_url: str, sync_redis: redis.Redis) -> None:
    config = make_config(":providers:\n  :fake:\n    provider_class: dummy\n    clone_time: 0\n"
                         ":pools:\n  - name: p\n    size: 1\n    provider: fake\n")
    providers = build_providers(on_redis(config, redis_url))
    try:
        # Only the configured one: no implicit dummy provider beside it (issue 12).
        assert set(providers) == {"fake"} and providers["fake"].ready_check == "hostname"
        providers["fake"].clone("p", CloneSpec("vm1", "t", "p"))
        assert sync_redis.hkeys("vmpooler__dummy__fake__p") == ["vm1"]
    finally:
        close_providers(providers)
    blocking = connect_blocking(RedisSettings(url=redis_url))
    assert blocking.ping() and blocking.connection_pool.connection_kwargs["decode_responses"] is True
    blocking.close()


@pytest.mark.parametrize(("options", "message"), [
    ("clone_fail_percent: 101", "clone_fail_percent: must be a percentage"),
    ("boot_time: -1", "boot_time: must be >= 0"),
    ("ready_check: ping", "ready_check: must be one of tcp, hostname, none"),
])
def test_bad_dummy_options_are_reported_with_their_line(options: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"test.yaml:3: providers.dummy.{message}"):
        make_config(f":providers:\n  :dummy:\n    {options}\n")


def test_vsphere_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"test.yaml:4: providers.vsphere.port: must be >= 1"):
        make_config(":providers:\n  :vsphere:\n    server: vc\n    port: 0\n")
    config = make_config(":config:\n  manager_backoff_max: 7.5\n:vsphere:\n  server: vc\n  insecure: true\n")
    assert config.providers["vsphere"].options["insecure"] is True
    assert config.app.manager_backoff_max == 7.5
