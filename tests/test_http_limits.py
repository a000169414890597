"""vmpoolerd's HTTP protocol (vmpoolerd/http_limits.py) on real sockets: time limits on sending a request
(a client trickling its head one byte at a time is cut off too), the idle keep-alive timeout, and the caps
on connections per client address and in all, each refusal answered with the JSON error body."""

from __future__ import annotations

import asyncio
import configparser
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.conftest import make_config
from tests.test_http_protocol import serving
from vmpooler_core.config import HttpSettings
from vmpooler_core.errors import ConfigError
from vmpoolerd.http_limits import OTHER_FILES, budget, protocol

Scope = MutableMapping[str, Any]
FAST = HttpSettings(header_timeout=0.4, body_timeout=0.4, keep_alive_timeout=1)


class EchoApp:
    """Answers with the request body's length, after reading all of it; records what `receive` gave."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        body = b""
        while True:
            message = await receive()
            self.events.append(message["type"])
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = json.dumps({"ok": True, "read": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def serving_app(app: EchoApp, settings: HttpSettings, files: int = 4096) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with serving(sock, protocol(settings, files), app, timeout_keep_alive=settings.keep_alive_timeout):
        yield sock.getsockname()[1]


async def connect(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def answer(reader: asyncio.StreamReader, within: float = 5.0) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the next answer (read to the end of the connection)."""
    raw = await asyncio.wait_for(reader.read(), within)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw
    return int(head[9:12]), json.loads(body)


LOOPS = pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop],
                                ids=["uvloop", "asyncio"])


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], coroutine: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coroutine)  # type: ignore[arg-type]


def test_a_slow_head_or_body_is_answered_408_and_an_idle_connection_closed() -> None:
    # On the daemon's loop alone (the caps below run on both): these take seconds of waiting.
    run(uvloop.new_event_loop, slow_requests())


async def slow_requests() -> None:
    app = EchoApp()
    async with serving_app(app, FAST) as port:
        # A head trickled one byte at a time: activity does not extend the limit.
        reader, writer = await connect(port)
        started = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ":
            if reader.at_eof() or writer.is_closing():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)
        status, body = await answer(reader)
        assert (status, body["code"]) == (408, "request_timeout") and "head" in body["reason"]
        assert time.monotonic() - started < 3
        writer.close()

        # A body that stops halfway: 408, and the app is told the client went away (no 500).
        reader, writer = await connect(port)
        writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        status, body = await answer(reader)
        assert (status, body["code"]) == (408, "request_timeout") and "body" in body["reason"]
        assert app.events[-1] == "http.disconnect"
        writer.close()

        # On a kept-alive connection each request has its own time, from its first byte.
        reader, writer = await connect(port)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b'"read": 0}'), 5)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.25)  # the connection outlives header_timeout, idle less than keep_alive_timeout
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        status, body = await answer(reader)
        assert (status, body["code"]) == (408, "request_timeout") and 0.3 < time.monotonic() - started < 3
        writer.close()

        # Nothing sent at all: closed without an answer.
        reader, writer = await connect(port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

        # A kept-alive connection is served, then closed once idle for keep_alive_timeout.
        reader, writer = await connect(port)
        writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        head = await asyncio.wait_for(reader.readuntil(b'"read": 3}'), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


@LOOPS
def test_connections_over_the_caps_are_answered_429_or_503_and_others_served(
        loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    run(loop_factory, capped())


async def capped() -> None:
    settings = HttpSettings(max_connections=3, max_connections_per_address=2)
    async with serving_app(EchoApp(), settings) as port:
        held = [await connect(port, "127.0.0.2") for _ in range(2)]
        reader, writer = await connect(port, "127.0.0.2")
        status, body = await answer(reader)
        assert (status, body["code"]) == (429, "too_many_connections") and "127.0.0.2" in body["reason"]
        writer.close()
        held.append(await connect(port, "127.0.0.3"))
        reader, writer = await connect(port, "127.0.0.4")
        assert (await answer(reader))[0] == 503
        writer.close()
        # The held connections are served all along; one closed makes room for another.
        reader, writer = held.pop()
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert await answer(reader) == (200, {"ok": True, "read": 0})
        writer.close()
        for _ in range(100):  # bounded: the server sees the close within a few loop turns
            reader, writer = await connect(port, "127.0.0.4")
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, _ = await answer(reader)
            writer.close()
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200
        for _, writer in held:
            writer.close()


def test_the_caps_fit_the_open_files_limit() -> None:
    # At the usual 1,024 open files: 256 kept for Redis, LDAP and logs, three quarters of the rest for
    # connections, the last quarter to answer those refused.
    assert budget(HttpSettings(), 1024) == (576, 1024 - OTHER_FILES)
    assert budget(HttpSettings(max_connections=100), 1024) == (100, 768)
    assert budget(HttpSettings(max_connections=5000), 1024) == (576, 768)  # cut down, with a warning
    assert budget(HttpSettings(), 65536)[0] == (65536 - OTHER_FILES) * 3 // 4


def test_the_http_section_is_read_with_defaults_and_checked() -> None:
    assert make_config("").http == HttpSettings()
    loaded = make_config("http: {header_timeout: 2.5, keep_alive_timeout: 3, max_connections_per_address: 0}")
    assert loaded.http == HttpSettings(header_timeout=2.5, keep_alive_timeout=3, max_connections_per_address=0)
    for bad, message in (("header_timeout: 0", "must be more than 0"), ("body_timeout: -1", ">= 0"),
                         ("max_connections: 0", ">= 1"), ("header_timout: 5", "did you mean `header_timeout`")):
        with pytest.raises(ConfigError, match=message):
            make_config(f"http: {{{bad}}}")


def test_the_service_examples_raise_the_open_files_limit() -> None:
    """At the usual 1,024 open files the daemon could serve 576 connections at once; the examples give it
    room for thousands (systemd: LimitNOFILE; supervisord: minfds, which its programs inherit)."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(examples / "vmpoolerd.service")
    supervisord = configparser.ConfigParser(interpolation=None)
    supervisord.read(examples / "supervisord.conf")
    for files in (int(unit["Service"]["LimitNOFILE"]), int(supervisord["supervisord"]["minfds"])):
        assert budget(HttpSettings(), files)[0] >= 5000
