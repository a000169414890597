"""Layered settings: command-line options > environment > the settings file > defaults.

The settings file is `$XDG_CONFIG_HOME/vmpooler/cli.yaml` (default `~/.config/vmpooler/cli.yaml`), a
YAML mapping with any of these keys:

    url: http://vmpooler.example.com:4567     # API server (VMPOOLER_URL)
    redis_url: redis://redis.example.com/0     # work directly on Redis (VMPOOLER_REDIS_URL)
    redis_from_config: true                    # ... on the Redis of the config's `redis:` (VMPOOLER_REDIS_FROM_CONFIG)
    config: /etc/vmpooler/vmpooler.yaml        # pools and aliases, for the Redis backend (VMPOOLER_CONFIG)
    token: abcdefghijklmnopqrstuvwxyz012345    # sent as X-AUTH-TOKEN (VMPOOLER_TOKEN)
    user: jdoe                                 # for `token` commands (VMPOOLER_USER)
    timeout: 30                                # seconds to wait for an answer (VMPOOLER_TIMEOUT)

Several servers: `profiles:` maps a name to a mapping of the same keys, and `--profile NAME` (or
VMPOOLER_PROFILE, or the file's own `profile:` key) picks one; its keys replace the file's top-level ones:

    token: abcdefghijklmnopqrstuvwxyz012345    # shared by every profile unless one sets its own
    profile: prod                              # the one used when none is named
    profiles:
      prod: {url: https://vmpooler.example.com}
      lab: {config: /etc/vmpooler/lab.yaml}    # a config alone: that config's Redis

The backend is chosen by the highest layer that names a server: `--api`, `--redis URL` or
`--redis-from-config` on the command line (one of them), else VMPOOLER_URL, VMPOOLER_REDIS_URL or
VMPOOLER_REDIS_FROM_CONFIG, else the file's `url`, `redis_url` or `redis_from_config`, else the default
API at http://127.0.0.1:4567, unless a vmpooler config is given (at any layer): then that config's own
Redis, as `vmpoolerd --config` would use it. When one layer names several, the API wins, then a Redis URL:
the API is the shared, checked path, and Redis access is the special case an admin opts into explicitly.

`redis_from_config` reaches Redis with the vmpooler config's own `redis:` settings, as the daemon does
(a Sentinel group, an ACL user, TLS, a unix socket; the daemon's VMPOOLER_REDIS_* overrides apply too),
while a Redis URL is a single server.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import CliError
from .exit_codes import ExitCode

DEFAULT_URL = "http://127.0.0.1:4567"
DEFAULT_TIMEOUT = 30.0
# Connecting is quick or it is not going to happen: "unreachable" within a few seconds, even when an
# answer (a big token list, a slow server) is allowed to take longer.
CONNECT_TIMEOUT = 3.0

ENV = {
    "url": "VMPOOLER_URL",
    "redis_url": "VMPOOLER_REDIS_URL",
    "redis_from_config": "VMPOOLER_REDIS_FROM_CONFIG",
    "config": "VMPOOLER_CONFIG",
    "token": "VMPOOLER_TOKEN",
    "user": "VMPOOLER_USER",
    "timeout": "VMPOOLER_TIMEOUT",
}
KEYS = tuple(ENV)
# Keys of the settings file only: the profiles, and which one is used when none is named.
FILE_KEYS = (*KEYS, "profile", "profiles")
PROFILE_ENV = "VMPOOLER_PROFILE"

Backend = Literal["api", "redis"]


@dataclass(frozen=True)
class Settings:
    backend: Backend
    url: str
    redis_url: str | None = None
    redis_from_config: bool = False  # the Redis of the config's `redis:` section (when no redis_url)
    config: str | None = None  # a path, or (as VMPOOLER_CONFIG may be) a whole YAML document
    token: str | None = None
    user: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    origin: Mapping[str, str] = field(default_factory=dict)  # key -> "option", "env VAR", file path

    @property
    def connect_timeout(self) -> float:
        return min(CONNECT_TIMEOUT, self.timeout)

    def user_or_login(self) -> str:
        if self.user:
            return self.user
        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER: a container, usually
            raise CliError("cannot tell who you are: pass --user or set VMPOOLER_USER", ExitCode.USAGE) from None


def settings_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "vmpooler" / "cli.yaml"


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CliError(f"{path}: cannot read settings: {err.strerror}") from None
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(text)
    except YAMLError as err:
        raise CliError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None


def _values(path: Path, data: dict[Any, Any], known: tuple[str, ...], where: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in known:
            raise CliError(f"{path}: unknown setting {where}{key!r} (known: {', '.join(known)})")
        if value is not None and key != "profiles":
            values[key] = str(value)
    if "config" in values and "\n" not in values["config"]:
        # A relative config path in the settings file means relative to the settings file.
        values["config"] = str(path.parent / Path(values["config"]).expanduser())
    return values


def read_file(path: Path, profile: str | None = None) -> dict[str, str]:
    """The settings file's values as strings, with the named profile's (else the file's `profile:`) over
    the top level; {} when there is no file. Unknown keys and profiles are errors, so that a typo
    (`redis-url:`, `--profile prdo`) is reported instead of silently doing nothing."""
    data = _load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping of settings ({', '.join(KEYS)})")
    values = _values(path, data, FILE_KEYS, "")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(p, dict | None) for p in profiles.values()):
        raise CliError(f"{path}: `profiles` must map each profile's name to its settings")
    chosen = profile or values.pop("profile", None)
    values.pop("profile", None)
    if chosen is None:
        return values
    if chosen not in profiles:
        known = ", ".join(sorted(map(str, profiles))) or f"none: {path} has no `profiles:`"
        raise CliError(f"no profile {chosen!r} in {path} (profiles: {known})", ExitCode.USAGE)
    return {**values, **_values(path, profiles[chosen] or {}, KEYS, f"in profile {chosen!r}: ")}


def _timeout(value: str, origin: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise CliError(f"{origin}: timeout must be a number of seconds from 0 to 3600, not {value!r}",
                       ExitCode.USAGE)
    return seconds


def _flag(value: str, origin: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise CliError(f"{origin}: redis_from_config must be true or false, not {value!r}", ExitCode.USAGE)


def resolve(options: Mapping[str, Any], env: Mapping[str, str], file_values: Mapping[str, str],
            file_name: str = "settings file") -> Settings:
    """Merge the layers. `options` holds only what was given on the command line (None = not given)."""
    given = {k: str(v) for k, v in options.items() if v not in (None, False) and k in KEYS}
    chosen = [option for key, option in (("url", "--api"), ("redis_url", "--redis"),
                                         ("redis_from_config", "--redis-from-config")) if key in given]
    if len(chosen) > 1:
        raise CliError(f"{' and '.join(chosen)} are mutually exclusive: pick one backend", ExitCode.USAGE)
    layers: list[tuple[str, Mapping[str, str]]] = [
        ("option", given),
        ("env", {k: env[var] for k, var in ENV.items() if env.get(var)}),
        (file_name, file_values),
    ]
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    backend: Backend | None = None
    redis_from: str | None = None  # how the highest layer that names Redis names it: "url" or "config"
    for name, layer in layers:
        origins = {key: f"env {ENV[key]}" if name == "env" else name for key in layer}
        from_config = "redis_from_config" in layer and _flag(layer["redis_from_config"], origins["redis_from_config"])
        if backend is None and ("url" in layer or "redis_url" in layer or from_config):
            backend = "api" if "url" in layer else "redis"
        if redis_from is None and ("redis_url" in layer or from_config):
            redis_from = "url" if "redis_url" in layer else "config"
        for key, value in layer.items():
            if key not in values:
                values[key] = value
                origin[key] = origins[key]
    declined = "redis_from_config" in values and not _flag(values["redis_from_config"], origin["redis_from_config"])
    if backend is None and values.get("config") and not declined:
        # A vmpooler config and no server: the Redis that config names, as the daemon would use it.
        backend, redis_from = "redis", "config"
    timeout = _timeout(values["timeout"], origin["timeout"]) if "timeout" in values else DEFAULT_TIMEOUT
    return Settings(
        backend=backend or "api",
        url=values.get("url", DEFAULT_URL),
        redis_url=values.get("redis_url") if redis_from == "url" else None,
        redis_from_config=redis_from == "config",
        config=values.get("config"),
        token=values.get("token") or None,
        user=values.get("user"),
        timeout=timeout,
        origin=origin,
    )


def load(options: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    path = settings_path(env)
    profile = options.get("profile") or env.get(PROFILE_ENV) or None
    return resolve(options, env, read_file(path, profile), str(path) + (f" (profile {profile})" if profile else ""))
