"""vmpoolerd's uvicorn protocol (vmpoolerd/http_limits.py) puts the same addresses in the ASGI scope as
uvicorn's own does, over TCP and over a Unix socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vmpoolerd.http_limits import LimitedHttpToolsProtocol

Scope = MutableMapping[str, Any]


async def echo_addresses(scope: Scope, receive: Callable[[], Awaitable[Any]],
                         send: Callable[[Any], Awaitable[None]]) -> None:
    assert scope["type"] == "http"
    body = json.dumps({"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(sock: socket.socket, protocol: type, app: Any = echo_addresses,
                  **options: Any) -> AsyncIterator[None]:
    """`app` served on `sock` by uvicorn with `protocol` (and uvicorn's `options`) for the block."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", http=protocol, log_config=None, access_log=False,
                                           **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):  # bounded: 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any]:
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


# vmpoolerd serves on uvloop; the asyncio loop is what uvicorn falls back to without it.
LOOPS = pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop],
                                ids=["uvloop", "asyncio"])


@LOOPS
def test_tcp_addresses_match_uvicorns(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(tcp_addresses())


@LOOPS
def test_unix_socket_addresses_match_uvicorns(loop_factory: Callable[[], asyncio.AbstractEventLoop],
                                              tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(unix_addresses(tmp_path))


async def tcp_addresses() -> None:
    seen = {}
    for protocol in (LimitedHttpToolsProtocol, HttpToolsProtocol):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        address = sock.getsockname()
        async with serving(sock, protocol):
            reader, writer = await asyncio.open_connection(*address)
            local = writer.get_extra_info("sockname")
            seen[protocol] = await ask(reader, writer)
        assert seen[protocol] == {"client": list(local), "server": list(address), "scheme": "http"}
    assert len({json.dumps(addresses) for addresses in seen.values()}) == 2, "client ports differ, nothing else"


async def unix_addresses(tmp_path: Path) -> None:
    answers = []
    for n, protocol in enumerate((LimitedHttpToolsProtocol, HttpToolsProtocol)):
        path = str(tmp_path / f"api{n}.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        async with serving(sock, protocol):
            answers.append((path, await ask(*await asyncio.open_unix_connection(path))))
    for path, answer in answers:
        assert answer["server"] == [path, None] and answer["scheme"] == "http"
    assert answers[0][1]["client"] == answers[1][1]["client"]
