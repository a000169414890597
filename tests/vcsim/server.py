"""Start the govmomi vCenter simulator of tests/vcsim for tests: a real SOAP server, never a fake.

    with VcsimServer(folders=["vmpooler/pool1"]).start() as sim:
        si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                          disableSslCertValidation=True)
        sim.set_clone_fail(100)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tests.processes import terminate

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-vcsim"
GOVMOMI = Path("/usr/share/gocode/src/github.com/vmware/govmomi/simulator")


def can_build() -> bool:
    """Whether Debian's Go and govmomi sources are there (scripts/test installs them)."""
    return shutil.which("go") is not None and GOVMOMI.is_dir()


def build() -> str:
    """Build (or reuse) the simulator binary; return its path."""
    out = subprocess.run([str(BUILD)], check=True, stdout=subprocess.PIPE, text=True, timeout=600).stdout
    return out.strip().splitlines()[-1]


class VcsimServer:
    def __init__(
        self,
        templates: list[str] | None = None,
        folders: list[str] | None = None,
        clone_delay_ms: int = 0,
        clone_fail_percent: int = 0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.templates = templates if templates is not None else ["templates/centos-6-x86_64"]
        self.folders = folders or []
        self.clone_delay_ms = clone_delay_ms
        self.clone_fail_percent = clone_fail_percent
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[str] | None = None
        self.lines: dict[str, str] = {}
        self._log: IO[bytes] | None = None

    # Connection details, from the VCSIM_URL line.
    @property
    def url(self) -> str:
        return self.lines["VCSIM_URL"]

    @property
    def control_url(self) -> str:
        return self.lines["VCSIM_CONTROL"]

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.url).port or 443)

    @property
    def user(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).username or "")

    @property
    def password(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).password or "")

    def start(self, timeout: float = 30) -> VcsimServer:
        binary = os.environ.get("VMPOOLER_TEST_VCSIM") or build()
        args = [
            binary,
            "-listen", "127.0.0.1:0",
            "-control", "127.0.0.1:0",
            "-template", ",".join(self.templates),
            "-folders", ",".join(self.folders),
            "-clone-delay", f"{self.clone_delay_ms}ms",
            "-clone-fail-percent", str(self.clone_fail_percent),
            "-exit-on-stdin-eof",  # our stdin pipe closes when this process dies: no orphan server
            *self.extra_args,
        ]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        ready = threading.Event()
        proc = self.proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                key, sep, value = line.strip().partition("=")
                if sep:
                    self.lines[key] = value
                if key == "VCSIM_URL":  # printed last: everything is ready
                    break
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or "VCSIM_URL" not in self.lines:
            log = self.log()
            self.stop()
            raise RuntimeError(f"vcsim did not start:\n{log}")
        return self

    def log(self) -> str:
        """The simulator's stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """Stop with SIGTERM; return the exit code (0 on a clean stop)."""
        code = None
        if self.proc is not None:
            code = terminate(self.proc, 10)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> VcsimServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # The control endpoint.
    def control(self, path: str, method: str = "POST") -> str:
        req = urllib.request.Request(self.control_url + path, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(resp.read().decode())

    def set_clone_fail(self, percent: int) -> None:
        self.control(f"/clone-fail?percent={percent}")

    def set_clone_delay(self, ms: int) -> None:
        self.control(f"/clone-delay?ms={ms}")

    def set_clone_clash(self, count: int) -> None:
        """The next `count` clones fail with FileAlreadyExists (a leftover folder of their name)."""
        self.control(f"/clone-clash?count={count}")

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.control("/state", method="GET"))
        return result

    def soap_calls(self) -> Counter[str]:
        """The SOAP calls the simulator has answered so far, by method (RetrievePropertiesEx, ...)."""
        return Counter(self.state()["soap_calls"])

    def provider_yaml(self, name: str = "vsphere", **options: object) -> str:
        """The entry of a vSphere provider on this simulator under `:providers:` (with `options`), as YAML."""
        lines = [f"  :{name}:", f"    server: {self.host}", f"    port: {self.port}", f"    username: {self.user}",
                 f"    password: {self.password}", "    insecure: true", *(f"    {k}: {v}" for k, v in options.items())]
        return "\n".join(lines) + "\n"
