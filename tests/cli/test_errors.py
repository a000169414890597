"""Failures: an unreachable or silent server or Redis (exit 6, bounded time), bad configs, usage errors,
--debug, Ctrl-C; and the exit codes themselves."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.conftest import POOLS_YAML, Vmp, live_api
from tests.redis_server import RedisServer, free_port
from vmpooler_cli.exit_codes import HELP, MEANING, ExitCode

CONFIG_ARGS = Callable[[str], list[str]]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "vmpooler.yaml"
    path.write_text(POOLS_YAML)
    return path


@pytest.fixture(params=["redis", "api"])
def target(request: pytest.FixtureRequest, config_file: Path) -> CONFIG_ARGS:
    """host:port -> the options that point the command at that address, for each backend."""
    if request.param == "redis":
        return lambda where: ["--redis", f"redis://{where}/0", "--config", str(config_file)]
    return lambda where: ["--api", f"http://{where}"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never says a word: a hung server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def unconnectable() -> Iterator[str]:
    """A port whose accept queue is full, so new connections get no answer at all (SYNs dropped):
    what a firewalled or vanished host looks like, without leaving this machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        where = ("127.0.0.1", sock.getsockname()[1])
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(where)
            fillers.append(filler)
        yield f"{where[0]}:{where[1]}"
        for filler in fillers:
            filler.close()


def run_timed(args: list[str]) -> tuple[float, Result]:
    start = time.monotonic()
    result = Vmp("?", args).fails(ExitCode.UNREACHABLE, "pools")
    return time.monotonic() - start, result


def test_refused_connection_is_unreachable(target: CONFIG_ARGS) -> None:
    seconds, result = run_timed(target(f"127.0.0.1:{free_port()}"))
    assert seconds < 3
    assert "cannot reach" in result.stderr


def test_a_silent_server_is_unreachable_after_the_timeout(target: CONFIG_ARGS, silent_server: str) -> None:
    seconds, result = run_timed(["--timeout", "0.5", *target(silent_server)])
    assert 0.4 < seconds < 3
    assert silent_server in result.stderr


def test_no_connection_gives_up_after_the_connect_timeout(target: CONFIG_ARGS, unconnectable: str) -> None:
    """Even with the default 30 s answer timeout, connecting is given 3 s."""
    seconds, result = run_timed(target(unconnectable))
    assert 2.5 < seconds < 6
    assert "cannot reach" in result.stderr


def test_an_api_whose_redis_is_down_is_unreachable(redis_url: str) -> None:
    api = live_api(POOLS_YAML, f"redis://127.0.0.1:{free_port()}/0")
    try:
        result = Vmp("api", ["--api", api.url]).fails(ExitCode.UNREACHABLE, "checkout", "pool1")
        assert "cannot reach its Redis" in result.stderr
    finally:
        api.stop()


def test_an_api_whose_redis_is_stalled_is_unreachable_not_out_of_capacity() -> None:
    """A Redis that accepts nothing (SIGSTOP) makes the API answer 503 once its request deadline passes;
    the code in that answer, not the 503, tells the CLI it is an outage (6), not an empty pool (4)."""
    server = RedisServer().start()
    assert server.proc is not None
    api = live_api(POOLS_YAML + "redis:\n  socket_timeout: 0.5\n", server.url)
    try:
        Vmp("api", ["--api", api.url]).fails(ExitCode.NO_CAPACITY, "checkout", "pool1")  # answering, empty
        server.proc.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        result = Vmp("api", ["--api", api.url]).fails(ExitCode.UNREACHABLE, "checkout", "pool1")
        assert time.monotonic() - start < 5  # the API's deadline: socket_timeout + 1 s, and a sweep
        assert "cannot reach its Redis" in result.stderr and "did not answer in time" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        server.proc.send_signal(signal.SIGCONT)
        api.stop()
        server.stop()


def test_the_redis_backend_needs_a_config(redis_url: str) -> None:
    result = Vmp("redis", ["--redis", redis_url]).fails(ExitCode.USAGE, "pools")
    assert "--config" in result.stderr


def test_a_bad_config_names_the_file_and_line(redis_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n  - name: pool1\n    size: -1\n")
    result = Vmp("redis", ["--redis", redis_url, "--config", str(bad)]).fails(ExitCode.ERROR, "pools")
    assert f"{bad}:3" in result.stderr
    missing = Vmp("redis", ["--redis", redis_url, "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in missing.fails(ExitCode.ERROR, "pools").stderr


def test_both_backends_at_once_is_a_usage_error(redis_url: str) -> None:
    Vmp("?", ["--api", "http://127.0.0.1:1", "--redis", redis_url]).fails(ExitCode.USAGE, "pools")


def test_click_usage_errors_exit_2(vmp: Vmp) -> None:
    assert vmp("frobnicate").exit_code == ExitCode.USAGE
    assert vmp("show").exit_code == ExitCode.USAGE
    assert vmp("--timeout", "x", "pools").exit_code == ExitCode.USAGE


def test_debug_shows_the_traceback(vmp: Vmp) -> None:
    plain = vmp("show", "nosuchvm")
    assert "Traceback" not in plain.stderr
    result = vmp("--debug", "show", "nosuchvm")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.splitlines()[-1].startswith("vmpooler: error: ")


def test_ctrl_c_exits_130(vmp: Vmp, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmpooler_cli.backends import api, redis

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(redis.RedisBackend, "pools", interrupted)
    monkeypatch.setattr(api.ApiBackend, "pools", interrupted)
    result = vmp("pools")
    assert result.exit_code == ExitCode.INTERRUPTED == 130
    assert "error" not in result.stderr


def test_json_errors_are_one_object_on_stdout(vmp: Vmp) -> None:
    """Issue 13: with --json a failure is also JSON on stdout (it was nothing before): the same words on
    both backends, the core's error code being the API's."""
    result = vmp.fails(ExitCode.NOT_FOUND, "checkout", "nosuch", "--json")
    assert json.loads(result.stdout) == {"ok": False, "reason": "unknown pool or alias: nosuch",
                                         "code": "unknown_pool", "exit": 3}


def test_exit_codes_are_named_and_documented() -> None:
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0, "ERROR": 1, "USAGE": 2, "NOT_FOUND": 3, "NO_CAPACITY": 4, "UNAUTHORIZED": 5,
        "UNREACHABLE": 6, "LIMITED": 7, "INTERRUPTED": 130}
    for code in ExitCode:
        assert f"{code.value:<4} {code.name.lower().replace('_', ' ')}: {MEANING[code]}" in HELP


@pytest.mark.parametrize(("args", "code", "word"), [
    (["--json", "frobnicate"], ExitCode.USAGE, "usage"),  # click's own usage error, before any command
    (["show", "nosuchvm", "--json"], ExitCode.NOT_FOUND, "not_found"),
    (["--json", "checkout", "pool1"], ExitCode.NO_CAPACITY, "no_capacity"),
    (["lifetime", "vm1", "-5", "--json"], ExitCode.USAGE, "usage"),
    (["--json", "token", "list", "--user", "jdoe"], ExitCode.NOT_FOUND, "not_configured"),
    (["--json", "return", "--all"], ExitCode.USAGE, "usage"),
])
def test_every_error_is_json_with_json(vmp: Vmp, args: list[str], code: ExitCode, word: str) -> None:
    result = vmp(*args)
    assert result.exit_code == code, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {"ok": False, "reason": doc["reason"], "code": word, "exit": int(code)} and doc["reason"]
    assert doc["reason"] in result.stderr  # the line for people says the same


def test_an_unreachable_server_is_json_too() -> None:
    result = Vmp("api", ["--json", "--api", f"http://127.0.0.1:{free_port()}"])("pools")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert json.loads(result.stdout) | {"reason": ""} == {"ok": False, "reason": "", "code": "unreachable", "exit": 6}
