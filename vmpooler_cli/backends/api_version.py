"""Which API a server speaks, and where the answer is remembered.

The original vmpooler served `/api/v1` until 2021, `/api/v1` and `/api/v2` in its 2.x releases (v2: host
names as FQDNs, no `domain` key), and only `/api/v3` since 3.0 (2023); our `vmpoolerd` serves v1 (and
v3 beside it once it has it). The CLI speaks each. The URL may say which (`http://host/api/v3`); else the
server is asked once, newest first, `GET /api/vN/vm` (every version has that route, and it is cheap: the
pool names from the config), and the answer is remembered per server in the CLI's cache,
`$XDG_CACHE_HOME/vmpooler/servers.json` (default `~/.cache/vmpooler/servers.json`).

A remembered answer is checked again when a request meets what may be a missing route (a 404 with no
explanation, or our `no_such_route`): a server upgraded to another version is asked anew, and the request
is sent again to the version it speaks now.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import CliError
from ..exit_codes import ExitCode

VERSIONS = ("v3", "v2", "v1")  # newest first: the order a server is asked in
_SUFFIX = re.compile(r"/api(?:/(v\d+))?$")


def split_url(url: str) -> tuple[str, str | None]:
    """(server root, API version or None) from what a user may type: `host:4567`, `http://host:4567/`,
    `http://host:4567/api/v3`, `.../api/v1/`. The version suffix is never kept in the root, so no path is
    ever built as `/api/v3/api/v1/...`."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    found = _SUFFIX.search(url)
    if found is None:
        return url, None
    version = found.group(1)
    if version is not None and version not in VERSIONS:
        raise CliError(f"{url}: this CLI speaks API {', '.join(sorted(VERSIONS))}, not {version} "
                       "(or give the server's URL without /api/...: the CLI asks the server)", ExitCode.USAGE)
    return url[: found.start()], version


def cache_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "vmpooler" / "servers.json"


class KnownServers:
    """The API version of each server the CLI has talked to: `{"<root>": {"api": "v3"}}`. A cache only:
    a file that cannot be read or written is as good as none (the server is asked again)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def get(self, root: str) -> str | None:
        version = self._read().get(root, {}).get("api")
        return version if version in VERSIONS else None

    def remember(self, root: str, version: str | None) -> None:
        if self.path is None:
            return
        servers = self._read()
        if version is None:
            servers.pop(root, None)
        else:
            servers[root] = {"api": version}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole and renamed into place: two commands at once never leave half a file.
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".servers-")
        except OSError:
            return  # a read-only home: the next command asks the server again
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(servers, out, indent=2, sort_keys=True)
            os.replace(name, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(name)
