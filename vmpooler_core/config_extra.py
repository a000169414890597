"""More configuration files merged into the main one: `EXTRA_CONFIG` (or `VMPOOLER_EXTRA_CONFIG`) or the
main file's `config: extra_config`, a comma-separated list of files, as the original merges them (its
`deep_merge`, contract B5): only when the main configuration is a file, each file in turn into what came
before, where

* a key the merged-into document sets wins over the extra file's, unless it is empty (`~`) or false:
  the original's merge keeps only values Ruby calls true;
* mappings present in both are merged key by key, the same way;
* lists present in both are joined, without repeats (equal entries once: the earlier one), which is how
  an extra file's pools are added to the main file's.

So that errors still name the right file and line, every merged mapping and list records where each of
its keys or entries came from (`Merged`, `MergedList`; `config_node.Node` reads them). Relative paths are
relative to the working directory, where the original looks for them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config_node import Merged, MergedList, Node, Origin, item_line, key_line
from .errors import ConfigError

log = logging.getLogger("vmpooler.config")

ENV_VARIABLES = ("VMPOOLER_EXTRA_CONFIG", "EXTRA_CONFIG")  # ours first; the second is the original's name


def _name(key: Any) -> str:
    return str(key).lstrip(":")


def _kept(value: Any) -> bool:
    """Whether the merged-into document's value stands (the original's test: Ruby truthiness)."""
    return value is not None and value is not False


def _as_merged(data: Mapping[Any, Any], source: str) -> Merged:
    if isinstance(data, Merged):
        return data
    out = Merged()
    for key, value in data.items():
        out[key] = value
        out.origins[key] = (source, key_line(data, key))
    return out


def _entries(data: list[Any], source: str) -> list[tuple[Any, Origin]]:
    if isinstance(data, MergedList):
        return list(zip(data, data.origins, strict=True))
    return [(value, (source, item_line(data, index))) for index, value in enumerate(data)]


def _joined(dest: list[Any], dest_source: str, src: list[Any], src_source: str) -> MergedList:
    out = MergedList()
    for value, origin in _entries(dest, dest_source) + _entries(src, src_source):
        if value not in out:
            out.append(value)
            out.origins.append(origin)
    return out


def merge(dest: Any, dest_source: str, src: Any, src_source: str) -> Any:
    """`src` (from `src_source`) merged into `dest` (from `dest_source`); neither is changed."""
    if isinstance(src, Mapping) and isinstance(dest, Mapping):
        out = Merged()
        merged_into = _as_merged(dest, dest_source)
        out.update(merged_into)
        out.origins.update(merged_into.origins)
        index = {_name(key): key for key in out}
        for key, value in src.items():
            existing = index.get(_name(key))
            if existing is not None and _kept(out[existing]):
                out[existing] = merge(out[existing], out.origins[existing][0], value, src_source)
                continue
            if existing is not None:
                del out[existing]
            # Taken whole, but a list still loses its repeats, as the original's merge does.
            out[key] = _joined([], src_source, value, src_source) if isinstance(value, list) else value
            out.origins[key] = (src_source, key_line(src, key))
        return out
    if isinstance(src, list) and isinstance(dest, list):
        return _joined(dest, dest_source, src, src_source)
    return dest


def _files(top: Node, env: Mapping[str, str]) -> tuple[list[str], Callable[[str], ConfigError]]:
    """The extra files named, and how to report a bad one (naming where it was named)."""
    variable = next((v for v in ENV_VARIABLES if env.get(v)), None)
    if variable is not None:
        names = [name.strip() for name in env[variable].split(",") if name.strip()]
        return names, lambda message: ConfigError(message, source=f"environment {variable}")
    config = top.child("config")
    names = [name.strip() for entry in config.names("extra_config") for name in entry.split(",") if name.strip()]
    return names, lambda message: config.error("extra_config", message)


def with_extra_files(data: Any, source: str, env: Mapping[str, str],
                     parse: Callable[[str, str], Any]) -> Any:
    """The main document `data` (read from the file `source`) with its extra files merged in; `parse`
    reads one file's text (raising ConfigError that names it)."""
    if not Path(source).is_file():
        if any(env.get(variable) for variable in ENV_VARIABLES):
            log.warning("%s: not a file, so its extra configuration files (%s) are not merged, as in the "
                        "original", source, " or ".join(ENV_VARIABLES))
        return data
    files, bad = _files(Node(data, source, ""), env)
    for name in files:
        path = Path(os.path.expanduser(name))
        try:
            text = path.read_text()
        except OSError as err:
            raise bad(f"cannot read the extra configuration file {str(path.absolute())!r}: "
                      f"{err.strerror}") from None
        extra = parse(text, name)
        if extra is None:
            continue
        if not isinstance(extra, Mapping):
            raise ConfigError("must be a mapping (an extra configuration file)", source=name, key="<top>")
        log.info("%s: merged the extra configuration file %s", source, name)
        data = merge(data if data is not None else {}, source, extra, name)
    return data
