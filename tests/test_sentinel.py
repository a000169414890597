"""Redis Sentinel: the core follows a failover by itself (Debian's redis-sentinel, real processes)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from tests.api.helpers import ready
from tests.conftest import make_config
from tests.redis_server import RedisServer, free_port
from tests.tls_certs import TlsFiles, make_tls_files
from vmpooler_cli.app import cli
from vmpooler_core.checkout import Checkout
from vmpooler_core.errors import BackendUnavailable
from vmpooler_core.inventory import Inventory
from vmpooler_core.keys import Keys
from vmpooler_core.metrics import NullMetrics
from vmpooler_core.provider import CloneSpec, ProviderUnavailable
from vmpooler_core.redis_client import connect
from vmpooler_core.request import from_path
from vmpoolerd.api import create_app
from vmpoolerd.providers import build_providers, close_providers

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

K = Keys()


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class SentinelGroup:
    """A primary, a replica and one redis-sentinel watching them as `vmp`. `password`: the data nodes'
    requirepass (and the replica's masterauth, the sentinel's auth-pass). `sentinel_password`: the
    sentinel's own requirepass. `sentinel_users`: `user` lines of the sentinel's configuration."""

    def __init__(self, password: str | None = None, sentinel_password: str | None = None,
                 sentinel_users: tuple[str, ...] = (), tls: TlsFiles | None = None) -> None:
        self.password = password
        self.sentinel_password = sentinel_password
        self.sentinel_users = sentinel_users
        self.tls = tls  # TLS only, everywhere: clients, replication, the sentinel
        self.port = free_port()
        extra = (["--masterauth", password] if password else []) + (["--tls-replication", "yes"] if tls else [])
        self.master = RedisServer(password=password, tls=tls)
        self.replica = RedisServer(password=password, extra=extra, tls=tls)
        self.proc: subprocess.Popen[bytes] | None = None

    def _tls_args(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}

    def start(self) -> SentinelGroup:
        binary = shutil.which("redis-sentinel")
        assert binary, "redis-sentinel is not installed: run scripts/test"
        self.master.start()
        self.replica.start()
        redis.Redis(port=self.replica.port, password=self.password, **self._tls_args()).replicaof(  # type: ignore[arg-type]
            "127.0.0.1", self.master.port)
        # The replica online at the primary before the sentinel starts: the sentinel's first look at the
        # primary then finds it, rather than one of its 10 s refreshes later.
        master = redis.Redis(port=self.master.port, password=self.password, **self._tls_args())  # type: ignore[arg-type]
        _wait(lambda: "online" in str(master.info("replication").get("slave0", "")), 20, "replica online")
        master.close()
        workdir = Path(tempfile.mkdtemp(prefix="vmpooler-sentinel-"))
        conf = workdir / "sentinel.conf"
        listen = [f"port {self.port}"]
        if self.tls:
            listen = ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.server_cert}",
                      f"tls-key-file {self.tls.server_key}", f"tls-ca-cert-file {self.tls.ca}",
                      "tls-auth-clients no", "tls-replication yes"]
        lines = [*listen, "bind 127.0.0.1", f"dir {workdir}",
                 f"sentinel monitor vmp 127.0.0.1 {self.master.port} 1",
                 "sentinel down-after-milliseconds vmp 500", "sentinel failover-timeout vmp 3000"]
        lines += [f"sentinel auth-pass vmp {self.password}"] if self.password else []
        lines += [f"requirepass {self.sentinel_password}"] if self.sentinel_password else []
        lines += [f"user {user}" for user in self.sentinel_users]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self.admin().sentinel_master("vmp")["num-slaves"] >= 1, 40, "sentinel sees replica")
        return self

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.sentinel_password, **self._tls_args())  # type: ignore[arg-type]

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.master.port, password=self.password, decode_responses=True,
                           **self._tls_args())  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        self.master.stop()
        self.replica.stop()


@pytest.fixture
def sentinel_group() -> Iterator[tuple[RedisServer, RedisServer, int]]:
    group = SentinelGroup().start()
    try:
        yield group.master, group.replica, group.port
    finally:
        group.stop()


async def test_checkout_carries_on_after_failover(sentinel_group: tuple[RedisServer, RedisServer, int]) -> None:
    master, replica, port = sentinel_group
    cfg = make_config(f"redis:\n  sentinels: ['127.0.0.1:{port}']\n  master: vmp\n  socket_timeout: 1\n"
                      "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")
    direct = redis.Redis(port=master.port, decode_responses=True)
    direct.sadd(K.ready("pool1"), *(f"vm{i}" for i in range(10)))
    direct.close()
    client = connect(cfg.redis)
    co = Checkout(cfg, Inventory(client), NullMetrics())
    first = await co.take(from_path("pool1"))
    _wait(lambda: redis.Redis(port=replica.port).scard(K.ready("pool1")) == 9, 10, "replication")

    master.stop()  # the master dies; sentinel promotes the replica
    start = time.monotonic()
    second = None
    while second is None:
        assert time.monotonic() - start < 30, "no failover within 30 s"
        try:
            second = await co.take(from_path("pool1"))
        except (redis.RedisError, BackendUnavailable, OSError):
            time.sleep(0.2)
    assert second.hosts()[0] != first.hosts()[0]
    promoted = redis.Redis(port=replica.port, decode_responses=True)
    assert promoted.role()[0] == "master"
    assert promoted.smembers(K.running("pool1")) == {first.hosts()[0], second.hosts()[0]}
    promoted.close()
    await client.aclose()


def test_the_dummy_providers_blocking_client_follows_the_failover(
        sentinel_group: tuple[RedisServer, RedisServer, int]) -> None:
    """Providers get the Redis settings, not a client: the dummy provider's blocking client is made from
    the same Sentinel settings and finds the promoted replica by itself too."""
    master, replica, port = sentinel_group
    cfg = make_config(f"redis:\n  sentinels: ['127.0.0.1:{port}']\n  master: vmp\n  socket_timeout: 1\n"
                      "providers:\n  dummy: {clone_time: 0, boot_time: 0}\npools:\n  - {name: pool1, size: 1}\n")
    providers = build_providers(cfg)
    dummy = providers["dummy"]
    try:
        dummy.clone("pool1", CloneSpec("vm1", "template", "pool1"))
        direct = redis.Redis(port=master.port, decode_responses=True)
        assert direct.hkeys(K.dummy_folder("dummy", "pool1")) == ["vm1"], "written to the master"
        direct.close()
        _wait(lambda: redis.Redis(port=replica.port).hlen(K.dummy_folder("dummy", "pool1")) == 1, 10,
              "replication")

        master.stop()
        start = time.monotonic()
        while True:
            assert time.monotonic() - start < 30, "no failover within 30 s"
            try:
                dummy.clone("pool1", CloneSpec("vm2", "template", "pool1"))
                break
            except ProviderUnavailable:
                time.sleep(0.2)
        assert set(dummy.list_vms("pool1", None)) == {"vm1", "vm2"}
        promoted = redis.Redis(port=replica.port, decode_responses=True)
        assert promoted.role()[0] == "master"
        assert set(promoted.hkeys(K.dummy_folder("dummy", "pool1"))) == {"vm1", "vm2"}
        promoted.close()
    finally:
        close_providers(providers)


# Sentinels with a password, an ACL user on the sentinels, and the CLI through Sentinel (issue 20) ---------

DATA_PASSWORD = "data-Secret-3"
SENTINEL_PASSWORD = "sentinel-Secret-4"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def guarded_group() -> Iterator[SentinelGroup]:
    """Data nodes and the sentinel each with their own password, and an ACL user `watcher` on the
    sentinel with exactly the rules the README documents for one."""
    found = re.search(r"a sentinel ACL user needs `([^`]+)`", README.read_text().replace("\n", " "))
    assert found, "the README documents no sentinel ACL"
    group = SentinelGroup(DATA_PASSWORD, SENTINEL_PASSWORD,
                          sentinel_users=(f"watcher on >watcher-Secret-5 -@all {found.group(1)}",
                                          "stranger on >stranger-Secret-8 -@all +hello +ping")).start()
    try:
        yield group
    finally:
        group.stop()


def sentinel_yaml(group: SentinelGroup, credentials: str) -> str:
    return (f"redis:\n  sentinels: ['127.0.0.1:{group.port}']\n  master: vmp\n  socket_timeout: 1\n"
            f"  password: '{DATA_PASSWORD}'\n{credentials}"
            "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")


def _api(config_text: str) -> TestClient:
    return TestClient(create_app(make_config(config_text), metrics=NullMetrics()))


@pytest.mark.parametrize("credentials", [
    f"  sentinel_password: '{SENTINEL_PASSWORD}'\n",
    "  sentinel_username: watcher\n  sentinel_password: 'watcher-Secret-5'\n",
])
def test_sentinels_with_a_password(guarded_group: SentinelGroup, credentials: str) -> None:
    """Report 3: there was no setting for the sentinels' password. Now the sentinels' credentials (their
    requirepass, or an ACL user of theirs with the README's rules) and the data nodes' are both used."""
    direct = redis.Redis(port=guarded_group.master.port, password=DATA_PASSWORD, decode_responses=True)
    direct.sadd(K.ready("pool1"), "vm1")
    with _api(sentinel_yaml(guarded_group, credentials)) as client:
        response = client.post("/api/v1/vm/pool1")
        assert (response.status_code, response.json()) == (200, {"ok": True, "pool1": {"hostname": "vm1"}})
        assert client.get("/api/v1/status").status_code == 200
    assert direct.smembers(K.running("pool1")) == {"vm1"}
    direct.close()


@pytest.mark.parametrize(("credentials", "reason"), [
    ("", "the sentinels (127.0.0.1:{port}) require a password and none is configured: set "
         "redis.sentinel_password (VMPOOLER_REDIS_SENTINEL_USERNAME, VMPOOLER_REDIS_SENTINEL_PASSWORD)"),
    ("  sentinel_password: 'not-the-Password-6'\n",
     "the sentinels (127.0.0.1:{port}) refused the credentials: check redis.sentinel_username and "
     "redis.sentinel_password (VMPOOLER_REDIS_SENTINEL_USERNAME, VMPOOLER_REDIS_SENTINEL_PASSWORD)"),
    ("  sentinel_username: stranger\n  sentinel_password: 'stranger-Secret-8'\n",
     "the sentinels' ACL user 'stranger' may not run SENTINEL|MASTERS: grant +sentinel|masters on the sentinels "
     "(the least ACL is in the README, section 'Redis ACL')"),
])
def test_sentinels_refusing_the_credentials_say_so(guarded_group: SentinelGroup, credentials: str, reason: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Report 3: the error was `MasterNotFoundError` with a 3 KB client repr that never said
    "authentication"."""
    expected = reason.format(port=guarded_group.port)
    with _api(sentinel_yaml(guarded_group, credentials)) as client:
        for path in ("/api/v1/status", "/healthcheck"):
            body = client.get(path).json()
            assert body["code"] == "backend_unavailable" and body["reason"] == expected, body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert expected in logged and "Redis<" not in logged and "ConnectionPool" not in logged, logged
    assert "not-the-Password-6" not in logged and DATA_PASSWORD not in logged


def test_the_cli_reaches_a_sentinel_group(guarded_group: SentinelGroup, tmp_path: Path) -> None:
    """Report 7: the CLI took a URL only, so it could not reach a Sentinel group; with
    --redis-from-config it uses the config's `redis:` section, sentinels and passwords included."""
    path = tmp_path / "vmpooler.yaml"
    path.write_text(sentinel_yaml(guarded_group, f"  sentinel_password: '{SENTINEL_PASSWORD}'\n"))
    direct = redis.Redis(port=guarded_group.master.port, password=DATA_PASSWORD, decode_responses=True)
    ready(direct, "pool1", "vm1")
    runner = CliRunner()
    result = runner.invoke(cli, ["--redis-from-config", "--config", str(path), "checkout", "pool1"])
    assert (result.exit_code, result.stdout) == (0, "vm1\n"), result.stderr
    assert direct.smembers(K.running("pool1")) == {"vm1"}
    result = runner.invoke(cli, ["--redis-from-config", "--config", str(path), "return", "vm1"])
    assert result.exit_code == 0, result.stderr
    assert direct.smembers(K.completed("pool1")) == {"vm1"}
    # The environment says the same as the option.
    result = runner.invoke(cli, ["--config", str(path), "pools", "--json"], env={"VMPOOLER_REDIS_FROM_CONFIG": "1"})
    assert result.exit_code == 0 and '"pool1"' in result.stdout, result.stderr
    # Without the sentinels' password: one clear line, exit 5.
    path.write_text(sentinel_yaml(guarded_group, ""))
    result = runner.invoke(cli, ["--redis-from-config", "--config", str(path), "pools"])
    assert result.exit_code == 5 and "set redis.sentinel_password" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Redis<" not in result.stderr
    direct.close()


def test_sentinels_and_data_nodes_over_tls(tmp_path: Path) -> None:
    """`ssl` and `ssl_ca_certs` apply to the sentinels and to the data nodes they name."""
    tls = make_tls_files(tmp_path / "tls")
    group = SentinelGroup(DATA_PASSWORD, tls=tls).start()
    try:
        direct = group.primary()
        ready(direct, "pool1", "vm1")
        text = (f"redis:\n  sentinels: ['127.0.0.1:{group.port}']\n  master: vmp\n  socket_timeout: 1\n"
                f"  password: '{DATA_PASSWORD}'\n  ssl: true\n  ssl_ca_certs: '{tls.ca}'\n"
                "providers: {dummy: {}}\npools:\n  - {name: pool1, size: 1}\n")
        with _api(text) as client:
            response = client.post("/api/v1/vm/pool1")
            assert (response.status_code, response.json()) == (200, {"ok": True, "pool1": {"hostname": "vm1"}})
        # Without the CA, the sentinels themselves are not trusted: said as a TLS failure, not a lost primary.
        with _api(text.replace(f"  ssl_ca_certs: '{tls.ca}'\n", "")) as client:
            body = client.get("/api/v1/status").json()
            assert body["code"] == "backend_unavailable" and "redis.ssl_ca_certs" in body["reason"], body
        assert direct.smembers(K.running("pool1")) == {"vm1"}
        direct.close()
    finally:
        group.stop()
