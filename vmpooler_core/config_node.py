"""A YAML mapping as the config loader reads it: keys with or without the Ruby colon, typed getters,
and errors that name the file, the line and the key (or the environment variable that set it).

Every getter records the key it was asked for. What the loader asks for is, by definition, what the
configuration may contain: after the load, `unread()` walks the tree for the keys nobody asked for, so
the list of valid keys is the loader's own reads and cannot drift from them.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .config import Secret
from .errors import ConfigError

T = TypeVar("T")
SECRET_KEYS = frozenset({"password", "pass", "secret"})
Origin = tuple[str, int | None]  # (file, line)


class Merged(dict[Any, Any]):
    """A mapping merged from several files (config_extra.py): `origins[key]` is where that key was
    written."""

    origins: dict[Any, Origin]

    def __init__(self) -> None:
        super().__init__()
        self.origins = {}


class MergedList(list[Any]):
    """A list joined from several files (config_extra.py): `origins[i]` is where entry i was written."""

    origins: list[Origin]

    def __init__(self) -> None:
        super().__init__()
        self.origins = []


class Node:
    """A YAML mapping with colon-insensitive keys that knows where each key sits in the file."""

    def __init__(self, data: Any, source: str, path: str, line: int | None = None) -> None:
        self.source = source
        self.path = path
        self.line = line
        self._raw: dict[str, Any] = {}
        self._lines: dict[str, int | None] = {}
        self._sources: dict[str, str] = {}  # key -> the file it was written in, when not `source`
        self._env: dict[str, str] = {}  # key -> environment variable that set it
        self._read: set[str] = set()
        self._ignored: set[str] = set()  # read, then set aside on purpose: reported as unused
        self._children: dict[str, Node] = {}
        self._items: dict[str, list[Node]] = {}
        # Patterns (fnmatch) of keys the original vmpooler accepts here that this one does not use.
        self._unused: tuple[str, ...] = ()
        if data is None:
            return
        if not isinstance(data, Mapping):
            raise ConfigError("must be a mapping", source=source, line=line, key=path or "<top>")
        for key, value in data.items():
            name = str(key).lstrip(":")
            self._raw[name] = value
            if isinstance(data, Merged):
                self._sources[name], self._lines[name] = data.origins[key]
            else:
                self._lines[name] = key_line(data, key)

    def keys(self) -> Iterator[str]:
        return iter(self._raw)

    def _get(self, key: str) -> Any:
        self._read.add(key)
        return self._raw.get(key)

    def has(self, key: str) -> bool:
        return self._get(key) is not None

    def raw(self, key: str) -> Any:
        return self._get(key)

    def known(self, *keys: str) -> None:
        """Keys valid here that this configuration does not need (another choice's settings)."""
        self._read.update(keys)

    def require(self, key: str) -> None:
        """`key` must be set. When it is missing and another key looks like a misspelling of it, that
        key is the error: "sze: unknown key; did you mean `size`?" says more than "size is required"."""
        if self.has(key):
            return
        unread = [k for k in self._raw if k not in self._read and not self.is_unused(k)]
        close = difflib.get_close_matches(key, unread, n=1, cutoff=0.75)
        if close:
            raise self.error(close[0], f"unknown key; did you mean `{key}`? ({key} is required)")
        raise self.error(key, "is required")

    def source_of(self, key: str) -> str:
        """The file `key` was written in (an extra configuration file's keys are not in the main one)."""
        return self._sources.get(key, self.source)

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        if key in self._env:
            return ConfigError(message, source=f"environment {self._env[key]}", key=self.where(key))
        return ConfigError(message, source=self.source_of(key), line=self._lines.get(key, self.line),
                           key=self.where(key))

    def child(self, key: str) -> Node:
        """The mapping under `key` (empty when unset); one Node per key, so its reads are kept."""
        found = self._children.get(key)
        if found is None:
            found = Node(self._get(key), self.source_of(key), self.where(key), self._lines.get(key, self.line))
            self._children[key] = found
        return found

    def items(self, key: str) -> list[Node]:
        """The list of mappings under `key` (empty when unset), e.g. the pools."""
        found = self._items.get(key)
        if found is None:
            value = self._get(key)
            if value is None:
                value = []
            if not isinstance(value, list):
                raise self.error(key, "must be a list")
            origins = value.origins if isinstance(value, MergedList) else \
                [(self.source_of(key), item_line(value, index)) for index in range(len(value))]
            found = [Node(item, source, f"{self.where(key)}[{index}]", line)
                     for index, (item, (source, line)) in enumerate(zip(value, origins, strict=True))]
            self._items[key] = found
        return found

    # Keys nobody reads ---------------------------------------------------------------------------

    def accept_unused(self, patterns: Iterable[str]) -> None:
        """Keys matching these patterns are known (the original vmpooler's) but unused: not an error."""
        self._unused += tuple(patterns)

    def is_unused(self, key: str) -> bool:
        """Known but unused: the original's, or set aside by the loader."""
        return key in self._ignored or any(fnmatch.fnmatchcase(key, pattern) for pattern in self._unused)

    def ignore(self, key: str) -> None:
        """The loader saw `key` and sets it aside on purpose: reported with the unused keys."""
        self._read.add(key)
        self._ignored.add(key)

    def unread(self) -> Iterator[tuple[Node, str]]:
        """(node, key) for every key in this mapping and those below it that no getter asked for, or
        that the loader ignored; in file order within each mapping."""
        for key in self._raw:
            if key not in self._read or key in self._ignored:
                yield self, key
        for key, child in self._children.items():
            if key not in self._ignored:
                yield from child.unread()
        for items in self._items.values():
            for item in items:
                yield from item.unread()

    def line_of(self, key: str) -> int | None:
        return self._lines.get(key, self.line)

    def unknown(self, key: str, also: str = "") -> ConfigError:
        """The error for a key that has no meaning here, with the closest valid key as a hint."""
        valid = sorted(self._read - self._ignored) + [p for p in self._unused if "*" not in p]
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return self.error(key, f"unknown key{hint}{also}")

    def variable(self, key: str) -> str | None:
        """The environment variable that set `key`, if one did."""
        return self._env.get(key)

    def override(self, key: str, value: str, variable: str) -> None:
        """Environment overrides: the value wins, and errors name the variable instead of a line."""
        self._raw[key] = value
        self._env[key] = variable

    # Typed getters -------------------------------------------------------------------------------

    def text(self, key: str, default: T) -> str | T:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, (Mapping, list)):
            raise self.error(key, "must be a string")
        return str(value)

    def integer(self, key: str, default: T, minimum: int | None = 0) -> int | T:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = as_int(value)
        except ValueError:
            raise self.error(key, f"must be a whole number (got {value!r})") from None
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be >= {minimum} (got {number})")
        return number

    def number(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(key, f"must be a number (got {value!r})") from None
        if number < 0:
            raise self.error(key, f"must be >= 0 (got {number})")
        return number

    def names(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings, normalised to a tuple once, here."""
        value = self._get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,) if value else ()
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return tuple(str(v) for v in value)
        raise self.error(key, "must be a string or a list of strings")

    def secret(self, key: str) -> Secret | None:
        value = self._get(key)
        return None if value is None else Secret(str(value))

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise self.error(key, f"must be true or false (got {value!r})")

    def plain(self) -> dict[str, Any]:
        """The mapping as plain Python values, passwords wrapped in `Secret`."""
        return {k: plain_value(v, k) for k, v in self._raw.items()}


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(value)


def plain_value(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k).lstrip(":"): plain_value(v, str(k).lstrip(":")) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(plain_value(v) for v in value)
    if key in SECRET_KEYS and value is not None:
        return Secret(str(value))
    return value


def key_line(data: Any, key: Any) -> int | None:
    if isinstance(data, CommentedMap):
        try:
            return int(data.lc.key(key)[0]) + 1
        except (KeyError, TypeError, AttributeError):
            return int(data.lc.line) + 1
    return None


def item_line(seq: Any, index: int) -> int | None:
    if isinstance(seq, CommentedSeq):
        try:
            return int(seq.lc.item(index)[0]) + 1
        except (KeyError, TypeError, AttributeError):
            return None
    return None
