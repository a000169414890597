"""A stand-in for the original vmpooler: an HTTP server (stdlib, in a thread) that answers with what the
original answers, from a file in ./recorded/, and keeps every request it was sent.

Each file is `{"server": <which original>, "answers": [...]}`; an answer is
`{"request": "METHOD /path[?query]", "json"?: body, "basic"?: "user:password", "token"?: str,
"status": int, "body": any}`. A request takes the first answer whose method and path (and query, when
the answer names one) are the same and whose `json`, `basic` and `token` (each when given) match what
was sent. Anything else is answered as the original answers a path it has no route for, whatever
the version: 404 `{"ok": false}`. Bodies are sent as the original sends them (Ruby's
`JSON.pretty_generate`: two-space indent; `Content-Type: application/json`, no charset).

The answers are written from the original's documented shapes (`vmpooler-contract.md`, parts A and B),
one file per era: a recording of what a client sees, without running Ruby.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "recorded"
MISSING = (404, {"ok": False})


@dataclass(frozen=True)
class Sent:
    method: str
    path: str  # with the query, if any
    body: Any
    headers: dict[str, str]


@dataclass
class Recorded:
    """One era of the original (its answers), served on a free port once started: `url` is the root."""

    name: str
    answers: list[dict[str, Any]]
    sent: list[Sent] = field(default_factory=list)
    url: str = ""

    @classmethod
    def of(cls, name: str) -> Recorded:
        """The answers of ./recorded/<name>.json."""
        return cls(name, json.loads((HERE / f"{name}.json").read_text())["answers"])

    def answer(self, sent: Sent) -> tuple[int, Any]:
        path, _, query = sent.path.partition("?")
        for answer in self.answers:
            method, _, wanted = answer["request"].partition(" ")
            wanted_path, has_query, wanted_query = wanted.partition("?")
            if (method, wanted_path) != (sent.method, path) or (has_query and wanted_query != query):
                continue
            if "json" in answer and answer["json"] != sent.body:
                continue
            if "basic" in answer and sent.headers.get("authorization") != \
                    "Basic " + base64.b64encode(answer["basic"].encode()).decode():
                continue
            if "token" in answer and sent.headers.get("x-auth-token") != answer["token"]:
                continue
            return int(answer["status"]), answer["body"]
        return MISSING

    def paths(self) -> list[str]:
        """`METHOD /path` of every request so far, in order."""
        return [f"{sent.method} {sent.path}" for sent in self.sent]

    def start(self) -> Recorded:
        recorded = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                sent = Sent(self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()})
                recorded.sent.append(sent)
                status, answer = recorded.answer(sent)
                data = json.dumps(answer, indent=2).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads `sent`, not a log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"recorded-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

