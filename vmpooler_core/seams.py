"""Seams: the places where the request path uses a third-party library's internals to save CPU, each with
the library's public ("stock") path beside it.

A routine upgrade of redis-py or Starlette may change the internals a fast path relies on. So
each fast path is chosen once, at start, through `Seams.fast(name, detect)`:
- the stock path when the operator names the seam in VMPOOLER_STOCK (comma-separated seam names, or
  `all` or `1` for every seam): to rule a fast path out without a release, and for CI to test the
  stock paths;
- the stock path when `detect()` gives a reason: the installed library no longer has what the fast path
  needs (an attribute gone, a signature changed). `lacks` and `refuses` below write such reasons;
- the fast path otherwise.
Each choice is logged once, on logger "vmpooler.seams": at INFO, or at WARNING when a library change
forced the stock path, since that costs CPU and the maintainers should look.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

log = logging.getLogger("vmpooler.seams")

ENV = "VMPOOLER_STOCK"
NAMES = frozenset({"scripts"})  # the one speed-up over a library internal that saved >= 10% (scripts.py)
_EVERY = frozenset({"all", "1"})


@dataclass(frozen=True, slots=True)
class Seams:
    """Which seams the operator sent down the stock path. Built once per process (`process_seams`), or
    by a test from an environment of its own (`from_env`)."""

    stock: frozenset[str] = frozenset()
    # Each seam's choice, made (and logged) at its first `fast` call and kept for the process's life.
    _chosen: dict[str, bool] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Seams:
        names = {name.strip().lower() for name in env.get(ENV, "").split(",")} - {"", "0"}
        if names & _EVERY:
            return cls(NAMES)
        if unknown := names - NAMES:
            log.warning("%s names no seam %s (the seams: %s); ignored", ENV, ", ".join(sorted(unknown)),
                        ", ".join(sorted(NAMES)))
        return cls(frozenset(names & NAMES))

    def fast(self, name: str, detect: Callable[[], str | None]) -> bool:
        """True when seam `name` takes its fast path. `detect` says why the installed library cannot
        carry it (None: it can); it is not asked when the operator chose the stock path."""
        chosen = self._chosen.get(name)
        if chosen is None:
            chosen = self._chosen[name] = self._choose(name, detect)
        return chosen

    def _choose(self, name: str, detect: Callable[[], str | None]) -> bool:
        assert name in NAMES, f"unknown seam {name!r}"
        if name in self.stock:
            log.info("seam %s: stock path, because %s names it", name, ENV)
            return False
        try:
            reason = detect()
        except Exception as exc:  # a detector inspects a library that may have changed in any way
            reason = f"detection failed ({type(exc).__name__}: {exc})"
        if reason is not None:
            log.warning("seam %s: stock path, because the installed library changed: %s", name, reason)
            return False
        log.info("seam %s: fast path (the installed library has what it needs)", name)
        return True


@cache
def process_seams() -> Seams:
    """This process's seams, from its environment as it is when first asked (at start-up)."""
    return Seams.from_env(os.environ)


def lacks(owner: object, *attributes: str) -> str | None:
    """A reason when `owner` lacks any of `attributes`, else None."""
    missing = [attribute for attribute in attributes if not hasattr(owner, attribute)]
    return f"{_name(owner)} has no {', '.join(missing)}" if missing else None


def refuses(owner: object, attribute: str, *args: Any, **kwargs: Any) -> str | None:
    """A reason when `owner.attribute(*args, **kwargs)` no longer fits the attribute's signature (or it
    is gone), else None. For a method looked up on a class, give no stand-in for self: one is added."""
    function = getattr(owner, attribute, None)
    if function is None or not callable(function):
        return lacks(owner, attribute) or f"{_name(owner)}.{attribute} is not callable"
    if isinstance(owner, type) and inspect.isfunction(inspect.getattr_static(owner, attribute)):
        args = (None, *args)  # an instance method: self
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:
        return f"{_name(owner)}.{attribute}{inspect.signature(function)} does not take the call it is given ({exc})"
    except ValueError:  # no signature to read (a builtin without text signature): nothing known against it
        return None
    return None


def _name(owner: object) -> str:
    if inspect.ismodule(owner):
        return owner.__name__
    kind = owner if isinstance(owner, type) else type(owner)
    return f"{kind.__module__}.{kind.__qualname__}"
