"""The `redis:` section: where Redis is (one way of url, sentinels, unix socket, or server and port),
who we are there, TLS, and how durable a checkout must be before it is answered."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import config_keys
from .config import DURABILITY, RedisSettings
from .config_node import Node

log = logging.getLogger("vmpooler.config")


def _sentinel(item: Mapping[Any, Any], node: Node, index: int) -> tuple[str, int]:
    entry = Node(item, node.source_of("sentinels"), f"{node.where('sentinels')}[{index}]", node.line_of("sentinels"))
    entry.require("host")
    address = (str(entry.text("host", "")), int(entry.integer("port", 26379, minimum=1)))
    stray = next(entry.unread(), None)
    if stray is not None:
        raise entry.unknown(stray[1])
    return address


# The ways of saying where Redis is; a configuration uses one. server/port, the default, is the last.
_WHERE: tuple[tuple[str, ...], ...] = (("url",), ("sentinels", "master"), ("unix_socket",), ("server", "port"))
_ONE_WAY = "Redis is reached one way: url, sentinels (with master), unix_socket, or server and port"
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def _redis_where(node: Node) -> tuple[str, ...]:
    """The keys of the one way this configuration reaches Redis; two ways are an error naming both
    keys. An environment variable wins over the file, as every override does: the file's other way is
    then set aside, with a warning."""
    used = [tuple(key for key in group if node.has(key)) for group in _WHERE]
    used = [group for group in used if group]
    variables = [variable for group in used for key in group if (variable := node.variable(key))]
    if variables:
        aside = [f"redis.{key}" for group in used for key in group if not any(node.variable(k) for k in group)]
        if aside:
            log.warning("%s: %s set aside: the environment (%s) says where Redis is", node.source,
                        ", ".join(aside), ", ".join(variables))
        used = [group for group in used if any(node.variable(key) for key in group)]
    if len(used) > 1:
        first, second = used[0][0], used[1][0]
        raise node.error(second, f"cannot be used with redis.{first}: {_ONE_WAY}")
    return used[0] if used else ()


def _sentinels(node: Node) -> tuple[tuple[str, int], ...]:
    sentinels: list[tuple[str, int]] = []
    raw = node.raw("sentinels")
    if not isinstance(raw, list) or not raw:
        raise node.error("sentinels", "must be a list of host:port strings or {host, port} mappings")
    for index, item in enumerate(raw):
        if isinstance(item, Mapping):
            sentinels.append(_sentinel(item, node, index))
        elif isinstance(item, str) and re.fullmatch(r"[^:\s]+(:\d+)?", item):
            host, _, port = item.partition(":")
            sentinels.append((host, int(port or 26379)))
        else:
            raise node.error("sentinels", f"bad sentinel address {item!r}")
    if not node.has("master"):
        raise node.error("master", "is required with sentinels")
    return tuple(sentinels)


def _url(node: Node) -> tuple[str | None, int | None]:
    """The url, and the database it names (None when it names none)."""
    url = node.text("url", None)
    if url is None:
        return None, None
    if not re.match(r"^(redis|rediss|unix)://", url):
        raise node.error("url", "must start with redis://, rediss:// or unix://")
    from redis.connection import parse_url  # the reading redis-py will make of it

    try:
        db = parse_url(url).get("db")  # type: ignore[no-untyped-call]
    except ValueError as err:
        raise node.error("url", f"is not a Redis url: {err}") from None
    return url, None if db is None else int(db)


def _tls_file(node: Node, key: str, base_dir: Path) -> str | None:
    """A certificate or key file, read at load so a wrong path is an error naming the key, not a
    connection failure later. Relative paths in the file are relative to the file."""
    value = node.text(key, None)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not node.variable(key):
        path = base_dir / path
    try:
        path.open("rb").close()
    except OSError as err:
        raise node.error(key, f"cannot read {path}: {err.strerror}") from None
    return str(path)


def redis_settings(node: Node, base_dir: Path) -> RedisSettings:
    node.accept_unused(config_keys.REDIS)
    where = _redis_where(node)
    if "master" in where and "sentinels" not in where:
        raise node.error("master", "is used only with sentinels")
    sentinels = _sentinels(node) if "sentinels" in where else ()
    url, url_db = _url(node) if "url" in where else (None, None)
    db = node.integer("db", None)
    if url_db is not None and db is not None and db != url_db:
        raise node.error("db", f"is {db}, but redis.url names database {url_db}: keep one")
    for key in ("sentinel_username", "sentinel_password"):
        if node.has(key) and not sentinels:
            raise node.error(key, "is used only with sentinels")
    if url is not None and node.has("ssl"):
        raise node.error("ssl", "cannot be used with redis.url: its scheme says it (rediss:// is TLS)")
    tls = url.startswith("rediss://") if url is not None else node.flag("ssl", False)
    if tls and "unix_socket" in where:
        raise node.error("ssl", "cannot be used with redis.unix_socket: TLS is for TCP connections")
    for key in (*_TLS_FILES, "ssl_check_hostname"):
        if node.has(key) and not tls:
            raise node.error(key, "needs TLS: set redis.ssl: true" + (" (or a rediss:// url)" if url else ""))
    if node.has("ssl_keyfile") and not node.has("ssl_certfile"):
        raise node.error("ssl_keyfile", "needs redis.ssl_certfile (the client certificate it belongs to)")
    socket = node.text("unix_socket", None) if "unix_socket" in where else None
    if socket is not None and not node.variable("unix_socket"):
        socket = str(base_dir / Path(socket).expanduser())
    tcp = "server" in where or "port" in where
    return RedisSettings(
        server=node.text("server", "localhost") if tcp else "localhost",
        port=node.integer("port", 6379, minimum=1) if tcp else 6379,
        username=node.text("username", None),
        password=node.secret("password"),
        db=db if db is not None else (url_db or 0),
        url=url,
        data_ttl=node.integer("data_ttl", 168),
        sentinels=sentinels,
        master=node.text("master", None) if sentinels else None,
        sentinel_username=node.text("sentinel_username", None),
        sentinel_password=node.secret("sentinel_password"),
        unix_socket=socket,
        ssl=tls,
        ssl_ca_certs=_tls_file(node, "ssl_ca_certs", base_dir),
        ssl_certfile=_tls_file(node, "ssl_certfile", base_dir),
        ssl_keyfile=_tls_file(node, "ssl_keyfile", base_dir),
        ssl_check_hostname=node.flag("ssl_check_hostname", True),
        socket_timeout=node.number("socket_timeout", 5.0),
        durability=_durability(node),
    )


def _durability(node: Node) -> str:
    """`redis: durability`, one of DURABILITY."""
    value = str(node.text("durability", "none")).lower()
    if value not in DURABILITY:
        raise node.error("durability", f"must be one of {', '.join(DURABILITY)} (got {value!r})")
    return value
