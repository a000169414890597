"""The `redis:` settings operators need (ACL user, sentinel credentials, TLS, unix socket), read the
same way everywhere, with conflicting settings an error that names both keys, and no password shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import make_config
from vmpooler_core import config_loader
from vmpooler_core.config import Secret
from vmpooler_core.errors import ConfigError


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # read at load; its content is checked at connect
    return path


def test_every_setting_loads(tmp_path: Path, ca: Path) -> None:
    (tmp_path / "client.crt").write_text("x")
    (tmp_path / "client.key").write_text("x")
    path = tmp_path / "vmpooler.yaml"
    path.write_text(":redis:\n  sentinels: ['s1:26379', {host: s2}]\n  master: vmp\n  username: vmpooler\n"
                    "  password: data-secret\n  sentinel_username: watcher\n  sentinel_password: sentinel-secret\n"
                    "  db: 3\n  ssl: true\n  ssl_ca_certs: ca.crt\n  ssl_certfile: client.crt\n"
                    "  ssl_keyfile: client.key\n  ssl_check_hostname: false\n")
    redis = config_loader.load(path, env={}).redis
    assert redis.sentinels == (("s1", 26379), ("s2", 26379)) and redis.master == "vmp" and redis.db == 3
    assert (redis.username, redis.sentinel_username) == ("vmpooler", "watcher")
    assert redis.password == Secret("data-secret") and redis.sentinel_password == Secret("sentinel-secret")
    # Relative files are relative to the configuration file.
    assert (redis.ssl, redis.ssl_ca_certs, redis.ssl_certfile, redis.ssl_keyfile, redis.ssl_check_hostname) == (
        True, str(tmp_path / "ca.crt"), str(tmp_path / "client.crt"), str(tmp_path / "client.key"), False)
    shown = repr(redis) + redis.describe() + repr(config_loader.load(path, env={}))
    assert "data-secret" not in shown and "sentinel-secret" not in shown
    assert "TLS" in redis.describe()


def test_defaults_verify_the_certificate_and_a_socket_is_a_path() -> None:
    redis = make_config("redis:\n  ssl: true\n").redis
    assert redis.ssl and redis.ssl_check_hostname and redis.ssl_ca_certs is None
    assert redis.describe() == "rediss://localhost:6379/0"
    redis = make_config("redis:\n  unix_socket: /run/redis/redis.sock\n  db: 2\n").redis
    assert redis.unix_socket == "/run/redis/redis.sock" and redis.describe() == "unix:///run/redis/redis.sock?db=2"


def test_environment_overrides_for_the_new_settings(ca: Path) -> None:
    env = {"VMPOOLER_REDIS_USERNAME": "u", "VMPOOLER_REDIS_PASSWORD": "p", "VMPOOLER_REDIS_SSL": "true",
           "VMPOOLER_REDIS_SSL_CA_CERTS": str(ca), "VMPOOLER_REDIS_SSL_CHECK_HOSTNAME": "false"}
    redis = config_loader.load(text="redis: {server: r.example}\n", env=env).redis
    assert (redis.username, redis.password, redis.ssl, redis.ssl_ca_certs, redis.ssl_check_hostname) == (
        "u", Secret("p"), True, str(ca), False)
    env = {"VMPOOLER_REDIS_SENTINEL_USERNAME": "w", "VMPOOLER_REDIS_SENTINEL_PASSWORD": "sp"}
    redis = config_loader.load(text="redis: {sentinels: ['s:1'], master: m}\n", env=env).redis
    assert (redis.sentinel_username, redis.sentinel_password) == ("w", Secret("sp"))
    redis = config_loader.load(text="", env={"VMPOOLER_REDIS_UNIX_SOCKET": "/run/r.sock"}).redis
    assert redis.unix_socket == "/run/r.sock"


@pytest.mark.parametrize(("text", "key", "message"), [
    ("redis:\n  url: redis://h/0\n  sentinels: ['s:1']\n  master: m\n", "redis.sentinels",
     "cannot be used with redis.url"),
    ("redis:\n  server: h\n  unix_socket: /run/r.sock\n", "redis.server", "cannot be used with redis.unix_socket"),
    ("redis:\n  unix_socket: /run/r.sock\n  port: 6380\n", "redis.port", "cannot be used with redis.unix_socket"),
    ("redis:\n  url: redis://h/0\n  server: h\n", "redis.server", "cannot be used with redis.url"),
    ("redis:\n  sentinels: ['s:1']\n  master: m\n  server: h\n", "redis.server", "cannot be used with redis.sentinels"),
    ("redis:\n  master: m\n", "redis.master", "is used only with sentinels"),
    ("redis:\n  sentinel_password: x\n", "redis.sentinel_password", "is used only with sentinels"),
    ("redis:\n  ssl_check_hostname: false\n", "redis.ssl_check_hostname", "needs TLS: set redis.ssl: true"),
    ("redis:\n  url: redis://h/0\n  ssl: true\n", "redis.ssl", "rediss://"),
    ("redis:\n  unix_socket: /run/r.sock\n  ssl: true\n", "redis.ssl", "cannot be used with redis.unix_socket"),
    ("redis:\n  url: redis://h/2\n  db: 3\n", "redis.db", "names database 2"),
    ("redis:\n  ssl: true\n  ssl_ca_certs: /nonexistent/ca.crt\n", "redis.ssl_ca_certs", "cannot read"),
    ("redis:\n  ssl: yes please\n", "redis.ssl", "must be true or false"),
    ("redis:\n  ssl_ca_cert: ca.crt\n", "redis.ssl_ca_cert", "did you mean `ssl_ca_certs`?"),
    ("redis:\n  unix_sock: /run/r.sock\n", "redis.unix_sock", "did you mean `unix_socket`?"),
    ("redis:\n  sentinels: []\n  master: m\n", "redis.sentinels", "must be a list"),
])
def test_conflicts_and_mistakes_name_the_keys(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(text)
    assert err.value.key == key and message in str(err.value), str(err.value)


def test_a_key_file_needs_its_certificate(ca: Path) -> None:
    with pytest.raises(ConfigError, match="redis.ssl_keyfile: needs redis.ssl_certfile"):
        make_config(f"redis:\n  ssl: true\n  ssl_keyfile: {ca}\n")


def test_the_environment_wins_over_the_files_way_to_redis(caplog: pytest.LogCaptureFixture) -> None:
    """Every override wins over the file: VMPOOLER_REDIS_URL sets the file's server/port aside (and its
    `db: 0`, which agrees with the url) instead of being a conflict."""
    text = "redis:\n  server: file.example\n  port: 6379\n  db: 0\n"
    with caplog.at_level(logging.WARNING, logger="vmpooler.config"):
        redis = make_config(text, VMPOOLER_REDIS_URL="redis://env.example:7000/0").redis
    assert redis.url == "redis://env.example:7000/0" and redis.db == 0
    assert [r.getMessage() for r in caplog.records] == [
        "test.yaml: redis.server, redis.port set aside: the environment (VMPOOLER_REDIS_URL) says where Redis is"]
    # Two ways in the environment itself are still a conflict, named by variable.
    with pytest.raises(ConfigError, match="environment VMPOOLER_REDIS_UNIX_SOCKET: redis.unix_socket: cannot be used"):
        make_config("", VMPOOLER_REDIS_URL="redis://h/0", VMPOOLER_REDIS_UNIX_SOCKET="/run/r.sock")


def test_the_example_documents_every_redis_setting() -> None:
    example = (Path(__file__).parent.parent / "examples" / "vmpooler.yaml.example").read_text()
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for key in ("username", "password", "sentinel_username", "sentinel_password", "ssl", "ssl_ca_certs",
                "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "db", "unix_socket", "sentinels", "master"):
        assert f"{key}:" in example, key
    for variable, section, _ in config_loader.ENV_OVERRIDES:
        if section == "redis":
            assert variable in readme, variable
