"""The CLI against every vmpooler a team may run (issue 21): the original of late 2016 (API v1), its 2.x
(API v2 beside v1) and today's 3.9.1 (API v3 only), each as its answers served for real over HTTP
(recorded.py), and our own daemon on each API version it serves.

The same commands give the same output on each; the API version is asked once and remembered per
server; a URL may name it (with or without `/api/vN`, never doubled); a 404 of a route the server lacks
is never taken for an unknown pool; `status` and `--debug` say which server and API version were used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import PASSWORD, USERS_AUTH, K, Vmp, ready
from tests.cli.recorded import Recorded
from vmpooler_cli.exit_codes import ExitCode

JDOE = {"VMPOOLER_USER": "jdoe", "VMPOOLER_PASSWORD": PASSWORD}
# Our daemon with the pools, aliases and domains of the recorded servers (API v1 has one domain only).
OURS = f"""
:config:
  domain: example.com
:dns_configs:
  :win:
    dns_class: dynamic-dns
    domain: win.example.net
{USERS_AUTH.strip()}
:providers: {{dummy: {{}}}}
:pools:
  - name: centos-6-x86_64
    alias: [centos-6-64, generic]
    size: 5
  - name: debian-7-x86_64
    alias: [debian-7]
    size: 2
  - name: win-2019-x86_64
    alias: [generic]
    size: 1
    dns_plugin: win
"""
ERAS = ("vmpooler-3.9.1", "vmpooler-2.x", "vmpooler-2016")
POOLS_TABLE = [
    "POOL             ALIASES               READY  PENDING  RUNNING  SIZE",
    "centos-6-x86_64  centos-6-64, generic  2      1        1        5",
    "debian-7-x86_64  debian-7              1      0        0        2",
    "win-2019-x86_64  generic               0      1        0        1",
]
# The original's /status named no aliases before 2017.
POOLS_TABLE_2016 = [
    "POOL             ALIASES  READY  PENDING  RUNNING  SIZE",
    "centos-6-x86_64           2      1        1        5",
    "debian-7-x86_64           1      0        0        2",
    "win-2019-x86_64           0      1        0        1",
]


def vm(pool: str, host: str, domain: str = "example.com") -> dict[str, str]:
    return {"pool": pool, "hostname": host, "fqdn": f"{host}.{domain}"}


@pytest.fixture(scope="session")
def originals() -> Iterator[dict[str, Recorded]]:
    servers = {era: Recorded.of(era).start() for era in ERAS}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def original(originals: dict[str, Recorded]) -> Callable[[str], Recorded]:
    """era -> its server, with no request seen yet (this test's requests only)."""
    def get(era: str) -> Recorded:
        originals[era].sent.clear()
        return originals[era]
    return get


@dataclass
class World:
    """One server: a recorded original, or our daemon on its Redis (`r`), where each VM a step needs is
    put in place first (the recorded servers answer the same VMs by themselves)."""

    name: str
    url: str  # the server's root
    api: str  # the version the CLI is to use there
    r: redis.Redis | None = None
    recorded: Recorded | None = None
    named: bool = False  # the URL given names the version

    def vmp(self, *options: str) -> Vmp:
        return Vmp("api", ["--api", self.url + (f"/api/{self.api}" if self.named else ""), *options])

    def ready(self, pool: str, *hosts: str) -> None:
        if self.r is not None:
            ready(self.r, pool, *hosts)
            for host in hosts:
                self.r.hset(K.vm(host), "ip", "10.0.0.5")

    def figures(self) -> None:
        """The pools' figures of the recorded /status: ready, running and pending per pool."""
        if self.r is None:
            return
        for state, pool, hosts in (("ready", "centos-6-x86_64", ("c1", "c2")), ("running", "centos-6-x86_64", ("c3",)),
                                   ("pending", "centos-6-x86_64", ("c4",)), ("ready", "debian-7-x86_64", ("d1",)),
                                   ("pending", "win-2019-x86_64", ("w1",))):
            self.r.sadd(K.state(state, pool), *hosts)

    def clear(self) -> None:
        if self.r is not None:
            self.r.flushdb()

    def snapshot_taken(self, host: str, name: str) -> None:
        """The manager took the snapshot (a revert needs one that exists)."""
        if self.r is not None:
            self.r.hset(K.vm(host), f"snapshot:{name}", "2026-03-19 10:30:00 +0000")


@pytest.fixture
def world_of(original: Callable[[str], Recorded], api_servers: Callable[[str], str],
             sync_redis: redis.Redis) -> Callable[[str], World]:
    """name -> that server. Our daemon serves v1 and v3: the CLI picks v3 (the newest), or v1 when the URL
    ends in /api/v1."""
    def get(name: str) -> World:
        if name.startswith("ours"):
            v1 = name == "ours-v1"
            return World(name, api_servers(OURS), "v1" if v1 else "v3", r=sync_redis, named=v1)
        server = original(name)
        api = {"vmpooler-3.9.1": "v3", "vmpooler-2.x": "v2", "vmpooler-2016": "v1"}[name]
        return World(name, server.url, api, recorded=server)
    return get


@pytest.fixture(params=[*ERAS, "ours-v3", "ours-v1"])
def world(request: pytest.FixtureRequest, world_of: Callable[[str], World]) -> World:
    return world_of(request.param)


def test_every_command_gives_the_same_output_on_every_server(world: World) -> None:
    vmp = world.vmp()
    world.figures()
    assert vmp.ok("pools").stdout.splitlines() == (POOLS_TABLE_2016 if world.name == "vmpooler-2016" else POOLS_TABLE)
    status = vmp.ok("status").stdout
    assert status.startswith("Found 1 empty pools. Empty: win-2019-x86_64\n")
    how = "from the URL" if world.named else "remembered"  # asked by `pools`
    assert f"\n  server    {world.url}, API {world.api} ({how})\n" in status
    assert "\n  capacity  3/8 ready (37.5%)\n" in status
    assert vmp.ok("summary").stdout.startswith("Summary ")
    world.clear()

    token = vmp.ok("token", "create", env=JDOE).stdout.strip()
    assert re.fullmatch("[a-z0-9]{32}", token)
    assert token in vmp.ok("token", "list", env=JDOE).stdout
    with_token = world.vmp("--token", token)

    # By alias: shown under the pool it came from, as the 2016 original (and ours on v1) answers.
    world.ready("centos-6-x86_64", "nimble-otter")
    assert with_token.json("checkout", "centos-6-64") == {
        "ok": True, "domain": "example.com", "vms": [vm("centos-6-x86_64", "nimble-otter")]}
    # Several pools, a count each.
    world.ready("debian-7-x86_64", "brave-koala", "quiet-heron")
    world.ready("centos-6-x86_64", "dusty-leopard")
    got = vmp.json("checkout", "debian-7-x86_64=2", "centos-6-x86_64")
    assert [v["pool"] for v in got["vms"]] == ["debian-7-x86_64", "debian-7-x86_64", "centos-6-x86_64"]
    assert sorted(got["vms"], key=lambda v: v["hostname"]) == [
        vm("debian-7-x86_64", "brave-koala"), vm("centos-6-x86_64", "dusty-leopard"),
        vm("debian-7-x86_64", "quiet-heron")]
    assert got["domain"] == "example.com"
    world.ready("debian-7-x86_64", "brave-koala", "quiet-heron")
    world.ready("centos-6-x86_64", "dusty-leopard")
    piped = vmp.ok("checkout", "debian-7-x86_64+debian-7-x86_64", "centos-6-x86_64").stdout.splitlines()
    assert sorted(piped) == ["brave-koala.example.com", "dusty-leopard.example.com", "quiet-heron.example.com"]
    assert "unknown pool or alias" in vmp.fails(ExitCode.NOT_FOUND, "checkout", "nosuch").stderr
    vmp.fails(ExitCode.NO_CAPACITY, "checkout", "win-2019-x86_64")

    # One VM.
    assert with_token.ok("tag", "nimble-otter", "owner=jdoe").stdout == "nimble-otter: tagged owner=jdoe\n"
    shown = with_token.json("show", "nimble-otter")
    assert (shown.pop("running") is not None, shown.pop("remaining") is not None) == (True, True)
    assert shown == {"hostname": "nimble-otter", "fqdn": "nimble-otter.example.com", "domain": "example.com",
                     "template": "centos-6-x86_64", "state": "running", "lifetime": 24, "tags": {"owner": "jdoe"},
                     "snapshots": [], "disk": [], "ip": "10.0.0.5"}
    assert with_token.ok("show", "nimble-otter").stdout.startswith("nimble-otter.example.com\n  template   centos")
    assert with_token.ok("lifetime", "nimble-otter", "48").stdout == "nimble-otter: lifetime 48 h\n"
    snapshot = with_token.ok("snapshot", "nimble-otter").stdout.strip()
    assert re.fullmatch("[a-z0-9]{32}", snapshot)
    world.snapshot_taken("nimble-otter", snapshot)
    assert with_token.ok("revert", "nimble-otter", snapshot).stdout == f"nimble-otter: revert to {snapshot} queued\n"
    assert with_token.ok("disk", "nimble-otter", "8").stdout == "nimble-otter: +8gb disk queued\n"
    assert [(v["hostname"], v["template"]) for v in with_token.json("mine")["vms"]] == [
        ("nimble-otter", "centos-6-x86_64")]
    assert with_token.ok("return", "nimble-otter").stdout == "nimble-otter returned\n"
    assert vmp.ok("token", "delete", token, env=JDOE).stdout == f"token {token} deleted\n"

    if world.recorded is not None:
        # Asked once (then remembered), newest first; everything else under the version found.
        paths = world.recorded.paths()
        newer = [f"GET /api/{v}/vm" for v in ("v3", "v2") if v > world.api]
        assert [p for p in paths if not p.split()[1].startswith(f"/api/{world.api}/")] == newer


@pytest.fixture(params=["vmpooler-3.9.1", "vmpooler-2.x", "ours-v3"])
def v2_or_later(request: pytest.FixtureRequest, world_of: Callable[[str], World]) -> World:
    return world_of(request.param)


def test_a_checkout_from_pools_of_different_domains(v2_or_later: World) -> None:
    """v2 and v3: an alias over pools with their own domains; each VM under its pool, with its own FQDN."""
    world, vmp = v2_or_later, v2_or_later.vmp()
    world.ready("centos-6-x86_64", "dusty-leopard")
    world.ready("win-2019-x86_64", "icy-walrus")
    got = vmp.json("checkout", "generic=2")
    assert (got["domain"], sorted(got["vms"], key=lambda v: v["hostname"])) == (None, [
        vm("centos-6-x86_64", "dusty-leopard"), vm("win-2019-x86_64", "icy-walrus", "win.example.net")])
    world.ready("centos-6-x86_64", "dusty-leopard")
    world.ready("win-2019-x86_64", "icy-walrus")
    assert sorted(vmp.ok("checkout", "generic=2").stdout.splitlines()) == [
        "dusty-leopard.example.com", "icy-walrus.win.example.net"]


def cached(tmp_path: Path) -> dict[str, dict[str, str]]:
    return dict(json.loads((tmp_path / "cache" / "vmpooler" / "servers.json").read_text()))


def test_the_api_version_is_asked_once_and_remembered(original: Callable[[str], Recorded], tmp_path: Path) -> None:
    server = original("vmpooler-2016")
    vmp = Vmp("api", ["--api", server.url])
    vmp.ok("pools")
    assert server.paths()[:4] == ["GET /api/v3/vm", "GET /api/v2/vm", "GET /api/v1/vm", "GET /api/v1/status"]
    assert cached(tmp_path) == {server.url: {"api": "v1"}}
    server.sent.clear()
    vmp.ok("pools")
    assert server.paths() == ["GET /api/v1/status"]


@pytest.mark.parametrize("suffix", ["/api/v3", "/api/v3/", "/"])
def test_the_url_may_name_the_version(suffix: str, original: Callable[[str], Recorded], tmp_path: Path) -> None:
    server = original("vmpooler-3.9.1")
    Vmp("api", ["--api", server.url + suffix]).ok("status")
    named = suffix.startswith("/api")
    assert server.paths() == ([] if named else ["GET /api/v3/vm"]) + ["GET /api/v3/status"]
    assert (tmp_path / "cache" / "vmpooler" / "servers.json").exists() is not named


def test_a_url_naming_a_version_the_server_lacks(original: Callable[[str], Recorded]) -> None:
    """Today's original, given as `.../api/v1` (what our CLI asked for before): said so, not an unknown pool."""
    server = original("vmpooler-3.9.1")
    result = Vmp("api", ["--api", server.url + "/api/v1"]).fails(ExitCode.ERROR, "checkout", "centos-6-64")
    assert result.stderr == (f"vmpooler: error: {server.url} does not serve API v1 ({server.url}/api/v1); it "
                             f"speaks API v3: use {server.url} or {server.url}/api/v3\n")


def test_a_remembered_version_the_server_no_longer_serves(original: Callable[[str], Recorded], tmp_path: Path) -> None:
    """Remembered v1, and the server was upgraded to 3.9 since: asked again, and the checkout made on v3."""
    server = original("vmpooler-3.9.1")
    (tmp_path / "cache" / "vmpooler").mkdir(parents=True)
    (tmp_path / "cache" / "vmpooler" / "servers.json").write_text(json.dumps({server.url: {"api": "v1"}}))
    assert Vmp("api", ["--api", server.url]).ok("checkout", "centos-6-64").stdout == "nimble-otter.example.com\n"
    assert server.paths()[:4] == ["POST /api/v1/vm", "GET /api/v1/vm", "GET /api/v3/vm", "POST /api/v3/vm"]
    assert cached(tmp_path) == {server.url: {"api": "v3"}}


def test_a_404_on_a_remembered_version_is_checked_once_then_believed(original: Callable[[str], Recorded]) -> None:
    server = original("vmpooler-3.9.1")
    vmp = Vmp("api", ["--api", server.url])
    vmp.ok("pools")
    server.sent.clear()
    result = vmp.fails(ExitCode.NOT_FOUND, "checkout", "nosuch")
    assert result.stderr == "vmpooler: error: unknown pool or alias in: nosuch\n"
    assert server.paths() == ["POST /api/v3/vm", "GET /api/v3/vm"]


def test_a_route_the_server_lacks_is_not_an_unknown_anything() -> None:
    """A server whose API v1 has no /summary (the original answers such a path with a bare 404)."""
    server = Recorded("no-summary", [{"request": "GET /api/v1/vm", "status": 200, "body": ["pool1"]}]).start()
    try:
        result = Vmp("api", ["--api", server.url]).fails(ExitCode.ERROR, "summary")
        assert result.stderr == (f"vmpooler: error: {server.url} does not offer the summary "
                                 "(API v1: no GET /api/v1/summary)\n")
    finally:
        server.stop()


def test_a_version_this_cli_does_not_speak() -> None:
    result = Vmp("api", ["--api", "http://127.0.0.1:9/api/v4"]).fails(ExitCode.USAGE, "pools")
    assert "this CLI speaks API v1, v2, v3, not v4" in result.stderr


def test_a_server_that_is_no_vmpooler() -> None:
    server = Recorded("nothing", []).start()
    try:
        result = Vmp("api", ["--api", server.url]).fails(ExitCode.ERROR, "pools")
        assert "answers none of /api/v3/vm, /api/v2/vm, /api/v1/vm: is this a vmpooler?" in result.stderr
    finally:
        server.stop()


def test_debug_says_which_server_and_api_version(original: Callable[[str], Recorded], tmp_path: Path) -> None:
    server = original("vmpooler-3.9.1")
    vmp = Vmp("api", ["--api", server.url])
    first = vmp("--debug", "pools")
    assert first.exit_code == 0
    cache = tmp_path / "cache" / "vmpooler" / "servers.json"
    assert first.stderr.splitlines() == [
        f"vmpooler: debug: GET {server.url}/api/v3/vm -> 200",
        f"vmpooler: debug: {server.url} speaks API v3 (asked; remembered in {cache})",
        f"vmpooler: debug: GET {server.url}/api/v3/status -> 200",
        f"vmpooler: debug: talked to {server.url}, API v3 (asked the server)",
    ]
    failed = vmp("--debug", "show", "nosuch")
    assert failed.exit_code == ExitCode.NOT_FOUND
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("Traceback") and lines[-1] == "vmpooler: error: no VM named 'nosuch'"
    assert f"vmpooler: debug: talked to {server.url}, API v3 (remembered)" in lines


def test_our_daemon_given_a_version_it_does_not_serve(api_servers: Callable[[str], str]) -> None:
    url = api_servers(OURS)
    result = Vmp("api", ["--api", url + "/api/v2"]).fails(ExitCode.ERROR, "pools")
    assert f"{url} does not serve API v2 ({url}/api/v2); it speaks API v" in result.stderr


def test_status_on_redis_says_so(redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "vmpooler.yaml"
    config.write_text(OURS)
    text = Vmp("redis", ["--redis", redis_url, "--config", str(config)]).ok("status").stdout
    assert f"\n  server    Redis at {redis_url}, directly (no API)\n" in text
