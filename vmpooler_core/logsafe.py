"""Text a client chose, made safe to write into a log line.

A value from a request (a user name, a path, an address from a proxy's header) may hold a line break
(a forged second line), an ANSI escape (a terminal that shows the log repaints or hides lines), other
control characters, or Unicode's invisible and direction-changing format characters (a line that reads
differently than it is). Such a value is written JSON-quoted: every one of those characters as a `\\uXXXX`
escape, non-ASCII letters too, so the line stays one line of plain ASCII and the value can be read back
exactly with a JSON parser. A value of only ordinary characters is written as it is.
"""

from __future__ import annotations

import json
import re

# Printable ASCII but space, double quote and backslash: written unquoted wherever `text()` is used.
PRINTABLE = re.compile(r"[!#-\[\]-~]+")
MAX_LENGTH = 200  # characters of a value kept; a longer one is cut and says so
_DEL = re.compile("\x7f")  # the one ASCII control character json.dumps leaves as it is


def quoted(value: object, plain: re.Pattern[str] = PRINTABLE, limit: int = MAX_LENGTH) -> str:
    """`value` as it is when `plain` matches all of it, else JSON-quoted (every control, format and
    non-ASCII character escaped). Cut to `limit` characters, the cut marked after the closing quote."""
    text = str(value)
    if len(text) <= limit and plain.fullmatch(text):
        return text
    cut = text[:limit]
    shown = _DEL.sub(r"\\u007f", json.dumps(cut))  # ensure_ascii: everything outside ASCII escaped
    return shown + (f"...({len(text)} chars)" if len(text) > limit else "")


def text(value: object, limit: int = 2000) -> str:
    """A longer value (a request path) for a log line: as it is when it is plain printable ASCII, else
    quoted as `quoted` does."""
    return quoted(value, PRINTABLE, limit)
