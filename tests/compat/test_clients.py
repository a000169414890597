"""What three clients of the original vmpooler send, byte for byte where it matters, against our real API
(uvicorn, real Redis), and what each reads from the answers: the README's compatibility promise.

- vmfloaty (Ruby, Faraday; the CLI most vmpooler users have): configured with `https://host/api/v1`, it
  asks relative paths under it (`vm/...`, `token/...`) but `/status` and `/summary` from the server's
  root (unversioned); its `url_encoded` middleware labels the JSON body of `modify` as
  `application/x-www-form-urlencoded`; it joins `domain` to each hostname; `list --active`,
  `delete --all` and `token status` read a token's VMs from `GET token/<t>` without credentials.
- go-vmpooler (johnmccabe/go-vmpooler): every request carries only `X-AUTH-TOKEN`, bodies unlabelled;
  checkout is `POST <endpoint>/vm/<pool>` (the answer keyed by the pool asked for); "my VMs" is
  `GET <endpoint>/token/<t>` and its `vms.running`, then `GET vm/<host>` for each, reading `domain`,
  `ip` and `state` as strings and `running` and `lifetime` as numbers.
- vmpooler-client (Python 2 httplib, puppetlabs-toy-chest): unversioned paths on `host:port`;
  `POST /vm/<template>`, `PUT /vm/<host>` with `{"lifetime":"N"}` and no content type, `GET /token/<t>`
  with no header at all (`vm running`).

Each client's requests are written here from its documented behaviour, not copied from it.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from tests.cli.conftest import LiveServer, live_api, ready
from tests.redis_server import RedisServer
from vmpooler_core.auth import hash_password
from vmpooler_core.keys import Keys

K = Keys()
PASSWORD = "s3cr3t"
DOMAIN = "delivery.example.net"
CONFIG = f"""
:config:
  domain: {DOMAIN}
  vm_lifetime_auth: 2
:auth:
  provider: users
  users:
    jdoe: '{hash_password(PASSWORD, iterations=1000)}'
:providers: {{dummy: {{}}}}
:pools:
  - name: centos-7-x86_64
    size: 5
  - name: debian-7-i386
    size: 5
"""
BASIC = {"Authorization": "Basic " + base64.b64encode(f"jdoe:{PASSWORD}".encode()).decode()}


class Wire:
    """Requests as these clients put them on the wire (http.client adds only Host and Content-Length)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = str(parts.hostname), int(parts.port or 80)

    def __call__(self, method: str, path: str, body: str | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[LiveServer]:
    api = live_api(CONFIG, redis_server.url)
    yield api
    api.stop()


@pytest.fixture
def wire(server: LiveServer, redis_url: str) -> Wire:
    return Wire(server.url)


def new_token(wire: Wire, path: str = "/api/v1/token") -> str:
    """vmfloaty `token get`, the Go example's and the Python CLI's `token create`: POST with Basic auth."""
    status, body = wire("POST", path, headers=BASIC)
    assert status == 200 and body["ok"] is True
    return str(body["token"])


def fill(r: redis.Redis) -> None:
    ready(r, "centos-7-x86_64", "c1", "c2", "c3")
    ready(r, "debian-7-i386", "d1")


# vmfloaty ------------------------------------------------------------------------------------------------

def floaty_hostnames(body: dict[str, Any]) -> dict[str, list[str]]:
    """vmfloaty's reading of a checkout: drop `ok` and `domain`, each pool's hostname(s) joined to the domain."""
    body = dict(body)
    assert body.pop("ok") is True
    domain = body.pop("domain", None)
    hosts = {pool: value["hostname"] for pool, value in body.items()}
    return {pool: [f"{h}.{domain}" if domain else h for h in ([v] if isinstance(v, str) else v)]
            for pool, v in hosts.items()}


def test_vmfloaty(wire: Wire, sync_redis: redis.Redis) -> None:
    fill(sync_redis)
    token = new_token(wire)
    auth = {"X-AUTH-TOKEN": token}
    # `floaty get centos-7-x86_64=2 debian-7-i386`: the a+a+b path form, no body.
    status, body = wire("POST", "/api/v1/vm/centos-7-x86_64+centos-7-x86_64+debian-7-i386", headers=auth)
    assert status == 200
    got = floaty_hostnames(body)
    assert [len(got["centos-7-x86_64"]), got["debian-7-i386"]] == [2, [f"d1.{DOMAIN}"]]
    assert all(h.endswith("." + DOMAIN) for h in got["centos-7-x86_64"])
    held = sorted(h.split(".")[0] for hosts in got.values() for h in hosts)

    # `floaty list --active` / `token status`: no credentials, no token header; then each VM.
    status, body = wire("GET", f"/api/v1/token/{token}")
    assert status == 200 and body[token]["user"] == "jdoe"
    assert sorted(body[token]["vms"]["running"]) == held
    status, body = wire("GET", f"/api/v1/vm/{held[0]}")
    vm = body[held[0]]
    assert status == 200 and vm["domain"] == DOMAIN and vm["template"] in got
    assert isinstance(vm["running"], float) and vm["lifetime"] == 2  # vm_lifetime_auth

    # `floaty modify HOST --lifetime 12 --tags ...`: a JSON body labelled as a form.
    form = {"Content-Type": "application/x-www-form-urlencoded", **auth}
    status, body = wire("PUT", f"/api/v1/vm/{held[0]}", json.dumps({"lifetime": 12, "tags": {"user": "jdoe"}}),
                        form)
    assert (status, body) == (200, {"ok": True})
    assert sync_redis.hget(K.vm(held[0]), "lifetime") == "12"
    assert sync_redis.hget(K.vm(held[0]), "tag:user") == "jdoe"
    assert wire("POST", f"/api/v1/vm/{held[0]}/disk/8", headers=auth)[0] == 202
    assert wire("POST", f"/api/v1/vm/{held[0]}/snapshot", headers=auth)[0] == 202

    # `floaty status` and `floaty summary`: from the server's root, unversioned.
    status, body = wire("GET", "/status")
    assert status == 200 and isinstance(body["status"]["message"], str)
    pool = body["pools"]["centos-7-x86_64"]
    assert (pool["ready"], pool["max"], pool["pending"]) == (1, 5, 0)
    status, body = wire("GET", "/summary")
    assert status == 200 and {"boot", "clone", "tag"} <= set(body)

    # `floaty delete --all`: the token's VMs, then DELETE each with the token.
    for host in wire("GET", f"/api/v1/token/{token}")[1][token]["vms"]["running"]:
        assert wire("DELETE", f"/api/v1/vm/{host}", headers=auth) == (200, {"ok": True})
    assert wire("GET", f"/api/v1/token/{token}")[1][token]["vms"]["running"] == []
    assert set(sync_redis.smembers(K.completed("centos-7-x86_64"))) | set(
        sync_redis.smembers(K.completed("debian-7-i386"))) == set(held)

    # `floaty token delete`: Basic auth, the owner's.
    assert wire("DELETE", f"/api/v1/token/{token}", headers=BASIC) == (200, {"ok": True})
    assert wire("GET", f"/api/v1/token/{token}")[0] == 404


# go-vmpooler ---------------------------------------------------------------------------------------------

def test_go_vmpooler(wire: Wire, sync_redis: redis.Redis) -> None:
    fill(sync_redis)
    token = new_token(wire)
    auth = {"X-AUTH-TOKEN": token}  # all the library ever sends
    # ListTemplates
    assert wire("GET", "/api/v1/vm", headers=auth) == (200, ["centos-7-x86_64", "debian-7-i386"])
    # Create: POST <endpoint>/vm/<template>, the answer read under the template asked for.
    status, body = wire("POST", "/api/v1/vm/centos-7-x86_64", headers=auth)
    assert status == 200 and body["ok"] is True
    host = body["centos-7-x86_64"]["hostname"]
    assert isinstance(host, str)
    # Get: every field it reads, with the JSON type it asserts.
    status, body = wire("GET", f"/api/v1/vm/{host}", headers=auth)
    vm = body[host]
    assert status == 200 and body["ok"] is True
    assert all(isinstance(vm[key], str) for key in ("domain", "ip", "state", "template"))
    assert all(isinstance(vm[key], int | float) for key in ("running", "lifetime"))
    assert vm["state"] == "running" and len(vm["template"].split("-")) >= 3  # it splits os-version-arch
    # SetLifetime and SetTags: unlabelled JSON bodies, `{"ok": true}` read back.
    assert wire("PUT", f"/api/v1/vm/{host}", json.dumps({"lifetime": 3}), auth) == (200, {"ok": True})
    assert wire("PUT", f"/api/v1/vm/{host}", json.dumps({"tags": {"department": "eng"}}), auth) == \
        (200, {"ok": True})
    assert wire("GET", f"/api/v1/vm/{host}", headers=auth)[1][host]["tags"] == {"department": "eng"}
    # GetAll: GET <endpoint>/token/<token> with only X-AUTH-TOKEN; user, created and vms.running.
    status, body = wire("GET", f"/api/v1/token/{token}", headers=auth)
    assert status == 200 and body["ok"] is True
    assert body[token]["user"] == "jdoe" and body[token]["created"]
    assert body[token]["vms"] == {"running": [host]}
    # Delete
    assert wire("DELETE", f"/api/v1/vm/{host}", headers=auth) == (200, {"ok": True})


# vmpooler-client (Python) --------------------------------------------------------------------------------

def test_python_vmpooler_client(wire: Wire, sync_redis: redis.Redis) -> None:
    fill(sync_redis)
    token = new_token(wire, "/token")  # `token create`, unversioned
    auth = {"X-AUTH-TOKEN": token}
    assert wire("GET", "/vm", headers=auth)[1] == ["centos-7-x86_64", "debian-7-i386"]  # `vm list`
    # `vm get <template>`: the hostname under the template's name.
    status, body = wire("POST", "/vm/debian-7-i386", headers=auth)
    assert (status, body["ok"], body["debian-7-i386"]["hostname"]) == (200, True, "d1")
    # `lifetime set`: a JSON string count, no content type.
    assert wire("PUT", "/vm/d1", '{"lifetime":"6"}', auth) == (200, {"ok": True})
    # `vm running`: GET /token/<t> with no header at all, then each VM's running hours and template.
    status, body = wire("GET", f"/token/{token}")
    assert status == 200 and body[token]["vms"]["running"] == ["d1"]
    info = wire("GET", "/vm/d1", headers=auth)[1]["d1"]
    assert float(info["running"]) >= 0 and info["template"] == "debian-7-i386" and info["lifetime"] == 6
    # `vm destroy`, then `token revoke`; an unknown token is 404 for `token info`.
    assert wire("DELETE", "/vm/d1", headers=auth) == (200, {"ok": True})
    assert wire("DELETE", f"/token/{token}", headers=BASIC) == (200, {"ok": True})
    assert wire("GET", f"/token/{token}")[0] == 404
