"""The pool manager ("replenisher"): `Manager(config, redis_client, providers, metrics)`."""

from __future__ import annotations

from .manager import Manager, PassReport, default_id

__all__ = ["Manager", "PassReport", "default_id"]
