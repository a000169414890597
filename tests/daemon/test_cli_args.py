"""The `vmpoolerd` command line as parsed: the manager id and where it is refused."""

from __future__ import annotations

import pytest

from vmpoolerd import cli_args


@pytest.mark.parametrize("role", ["all", "manager"])
def test_a_manager_id_is_passed_to_the_roles_running_a_manager(role: str) -> None:
    assert cli_args.parse([role, "--manager-id", "m1"]).manager_id == "m1"
    assert cli_args.parse([role]).manager_id is None


@pytest.mark.parametrize(("args", "message"), [
    (["api", "--manager-id", "m1"], "--manager-id: the api role runs no manager"),
    (["--manager-id", ""], "a manager id is one word: ''"),
    (["--manager-id", "two words"], "a manager id is one word: 'two words'"),
])
def test_bad_manager_ids_are_usage_errors(args: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_args.parse(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
