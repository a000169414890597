"""Values a client chose, as they go into a log line (vmpooler_core/logsafe.py): one line of printable
ASCII whatever they hold, and read back exactly with a JSON parser."""

from __future__ import annotations

import json

import pytest

from vmpooler_core import logsafe

HOSTILE = [
    "a\nb", "a\r\nforged line", "\x1b[2J\x1b[31mred", "\x9b31m", "nul\x00", "del\x7f", "tab\there",
    "line\u2028sep", "para\u2029sep", "next\x85line", "\u202eright-to-left", "zero\u200bwidth", 'quote"',
    "back\\slash", "caf\u00e9", "\ud800",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_is_quoted_printable_ascii_and_reads_back(value: str) -> None:
    for shown in (logsafe.quoted(value), logsafe.text(value)):
        assert shown.isascii() and shown.isprintable(), shown
        assert shown.startswith('"') and json.loads(shown) == value


@pytest.mark.parametrize("value", ["jdoe", "10.0.0.1", "::1", "/api/v1/vm/pool1?x=1&y=%0A", "a-b_c.d@e"])
def test_a_plain_value_is_written_as_it_is(value: str) -> None:
    assert logsafe.quoted(value) == value == logsafe.text(value)


def test_a_long_value_is_cut_and_says_so() -> None:
    shown = logsafe.quoted("x" * 500 + "\n")
    assert shown == json.dumps("x" * logsafe.MAX_LENGTH) + "...(501 chars)"
    assert logsafe.text("/" + "y" * 300) == "/" + "y" * 300  # a path is kept longer

