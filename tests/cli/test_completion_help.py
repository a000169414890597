"""Shell completion of pool names and aliases (bash, zsh, fish), --help, and the fast start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.cli.conftest import Vmp
from vmpooler_cli.app import cli
from vmpooler_cli.shapes import SHAPES


def complete(vmp: Vmp, shell: str, words: list[str]) -> list[str]:
    """What the shell would offer for the last word of `vmpooler <options> <words>`."""
    line = ["vmpooler", *vmp.base, *words]
    env = {"_VMPOOLER_COMPLETE": f"{shell}_complete", "COMP_WORDS": " ".join(line)}
    env["COMP_CWORD"] = words[-1] if shell == "fish" else str(len(line) - 1)
    result = CliRunner().invoke(cli, [], env=env, prog_name="vmpooler", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line]  # nothing to offer: one empty line
    if lines and lines[0] == "plain":  # zsh (and fish in newer click): type, value, help lines
        return [lines[i + 1] for i in range(0, len(lines), 3)]
    return [line.split(",", 1)[1].split("\t")[0] for line in lines]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_pool_names_and_aliases_complete(vmp: Vmp, shell: str) -> None:
    assert complete(vmp, shell, ["checkout", "pool"]) == ["pool1", "pool2", "poolone"]
    assert complete(vmp, shell, ["checkout", "pool2+poolo"]) == ["pool2+poolone"]
    assert complete(vmp, shell, ["checkout", "x"]) == []


def test_completion_without_a_server_completes_nothing_quickly(redis_url: str) -> None:
    dead = Vmp("api", ["--api", "http://127.0.0.1:1"])
    assert complete(dead, "bash", ["checkout", "p"]) == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = CliRunner().invoke(cli, [], env={"_VMPOOLER_COMPLETE": f"{shell}_source"}, prog_name="vmpooler")
    assert result.exit_code == 0
    assert f"_VMPOOLER_COMPLETE={shell}_complete" in result.stdout


def _commands() -> list[list[str]]:
    names = [[name] for name in cli.list_commands(None) if name != "token"]  # type: ignore[arg-type]
    return names + [["token", sub] for sub in ("create", "list", "delete")]


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_an_example_and_its_json_shape(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"vmpooler {' '.join(command)}" in result.stdout
    assert SHAPES[" ".join(command)] in result.stdout


def test_top_level_help() -> None:
    text = CliRunner().invoke(cli, ["--help"], terminal_width=200).stdout
    for expected in ("Exit codes:", "130  interrupted", "_VMPOOLER_COMPLETE=bash_source", "VMPOOLER_REDIS_URL",
                     "cli.yaml", "delete"):
        assert expected in text, expected


def test_help_imports_nothing_heavy() -> None:
    """`vmpooler --help` must stay fast: no HTTP, Redis, rich, YAML or core modules loaded for it."""
    probe = ("import contextlib, io, json, sys\n"
             "from vmpooler_cli.__main__ import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    code = main(['--help'])\n"
             "print(json.dumps([code, sorted(sys.modules)]))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    code, modules = json.loads(out)
    assert code == 0
    heavy = ("httpx", "redis", "rich", "ruamel", "vmpooler_core", "asyncio", "starlette", "uvicorn")
    assert [m for m in modules if m.split(".")[0] in heavy] == []
