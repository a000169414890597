"""The two ways the command reaches vmpooler: `api` (HTTP, API v1) and `redis` (direct, via the core)."""

from __future__ import annotations

from collections.abc import Mapping

from ..settings import Settings
from .base import Backend


def open_backend(settings: Settings, env: Mapping[str, str]) -> Backend:
    """Build the backend the settings name. Nothing connects yet: the first command does, so a bad
    server shows up as that command's error (exit 6), with its own message."""
    if settings.backend == "redis":
        from .redis import RedisBackend, load_config

        assert settings.redis_url is not None  # settings choose "redis" only when a URL was given
        return RedisBackend(settings.redis_url, load_config(settings.config, env), token=settings.token,
                            timeout=settings.timeout, connect_timeout=settings.connect_timeout)
    from .api import ApiBackend

    return ApiBackend(settings.url, token=settings.token, timeout=settings.timeout,
                      connect_timeout=settings.connect_timeout)
