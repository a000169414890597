"""A YAML mapping as the config loader reads it: keys with or without the Ruby colon, typed getters,
and errors that name the file, the line and the key (or the environment variable that set it)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .config import Secret
from .errors import ConfigError

T = TypeVar("T")
SECRET_KEYS = frozenset({"password", "pass", "secret"})


class Node:
    """A YAML mapping with colon-insensitive keys that knows where each key sits in the file."""

    def __init__(self, data: Any, source: str, path: str, line: int | None = None) -> None:
        self.source = source
        self.path = path
        self.line = line
        self._raw: dict[str, Any] = {}
        self._lines: dict[str, int | None] = {}
        self._env: dict[str, str] = {}  # key -> environment variable that set it
        if data is None:
            return
        if not isinstance(data, Mapping):
            raise ConfigError("must be a mapping", source=source, line=line, key=path or "<top>")
        for key, value in data.items():
            name = str(key).lstrip(":")
            self._raw[name] = value
            self._lines[name] = key_line(data, key)

    def keys(self) -> Iterator[str]:
        return iter(self._raw)

    def has(self, key: str) -> bool:
        return self._raw.get(key) is not None

    def raw(self, key: str) -> Any:
        return self._raw.get(key)

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        if key in self._env:
            return ConfigError(message, source=f"environment {self._env[key]}", key=self.where(key))
        return ConfigError(message, source=self.source, line=self._lines.get(key, self.line),
                           key=self.where(key))

    def child(self, key: str) -> Node:
        return Node(self._raw.get(key), self.source, self.where(key), self._lines.get(key, self.line))

    def override(self, key: str, value: str, variable: str) -> None:
        """Environment overrides: the value wins, and errors name the variable instead of a line."""
        self._raw[key] = value
        self._env[key] = variable

    # Typed getters -------------------------------------------------------------------------------

    def text(self, key: str, default: T) -> str | T:
        value = self._raw.get(key)
        if value is None:
            return default
        if isinstance(value, (Mapping, list)):
            raise self.error(key, "must be a string")
        return str(value)

    def integer(self, key: str, default: T, minimum: int | None = 0) -> int | T:
        value = self._raw.get(key)
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
        value = self._raw.get(key)
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
        value = self._raw.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,) if value else ()
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return tuple(str(v) for v in value)
        raise self.error(key, "must be a string or a list of strings")

    def secret(self, key: str) -> Secret | None:
        value = self._raw.get(key)
        return None if value is None else Secret(str(value))

    def flag(self, key: str, default: bool) -> bool:
        value = self._raw.get(key)
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
