"""The two ways the command reaches vmpooler: `api` (HTTP, API v1, v2 or v3) and `redis` (direct, via the core)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..settings import Settings
from .base import Backend


def open_backend(settings: Settings, env: Mapping[str, str], trace: Callable[[str], None] | None = None) -> Backend:
    """Build the backend the settings name. Nothing connects yet: the first command does, so a bad
    server shows up as that command's error (exit 6), with its own message. `trace` (--debug) is told
    each request and how the API version was found."""
    if settings.backend == "redis":
        from .redis import RedisBackend, load_config, redis_settings

        config = load_config(settings.config, env)
        return RedisBackend(redis_settings(settings, config), config, token=settings.token,
                            connect_timeout=settings.connect_timeout,
                            url_setting="redis.url" if settings.redis_from_config else "the --redis URL")
    from .api import ApiBackend
    from .api_version import KnownServers, cache_path

    return ApiBackend(settings.url, token=settings.token, timeout=settings.timeout,
                      connect_timeout=settings.connect_timeout, known=KnownServers(cache_path(env)), trace=trace)
