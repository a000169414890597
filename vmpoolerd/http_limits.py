"""uvicorn's httptools protocol, with limits on the request head, time limits on reading a request, caps on
open connections, and JSON answers for every refusal.

httptools (llhttp) sets no limit of its own: a 10 MB header, or ten thousand of them, is read into
memory and handed to the app. Here the head is measured while it is parsed, and refused before the app
runs (limits in vmpoolerd/api/errors.py, which guard.py applies too, for any other server):
- a request target over MAX_URL bytes -> 414;
- more than MAX_HEADERS headers, or more than MAX_HEADER_BYTES of names and values -> 431;
- a single header that never ends is cut off too, once the bytes read for the head in progress pass
  HEAD_BYTES (httptools keeps a header to itself until it is complete: only the bytes read show it);
- anything unparsable -> 400 (uvicorn's own plain-text answer, made JSON like every other error).

uvicorn times out only a kept-alive connection idle between requests; a client may take forever to send a
request, one byte at a time (slowloris), and hold as many connections as the process may open files, so
that nobody else gets one. Here (settings in the `http:` section, config.HttpSettings):
- a request's head must be complete within `header_timeout` of the connection (of its first byte, on a
  kept-alive connection), its body within `body_timeout` of its head -> 408, or, with nothing sent yet,
  the connection is closed;
- at most `max_connections_per_address` connections from one client address (-> 429) and
  `max_connections` in all (-> 503) are open at once: one more is answered at once and closed, before
  anything of it is read. The total stays below the process's open-files limit (`budget`), so that no
  connection is ever refused by the kernel (a reset, or a client left waiting in the backlog).

Each refusal is answered `{"ok": false, "code": ..., "reason": ...}` and the connection is closed: the
parser cannot find the next request in the middle of a refused one. Not at once, though, while files are
plentiful: what the client is still sending is read and dropped for up to LINGER seconds first, because
closing a socket with unread data resets the connection, and a client still writing its 10 MB header
would lose the answer with it.

Each new connection is set up by uvicorn's own `connection_made`. A re-implementation that learnt the
addresses with two system calls instead of seven saved 3-7% of a request's server CPU with a new
connection per request, less with keep-alive (bench/api_load.py): too little to rely on uvicorn's
internals for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import Counter
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vmpooler_core.config import HttpSettings
from vmpooler_core.errors import ErrorCode

from .api.errors import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL

log = logging.getLogger("vmpooler.http")

# The most a head in progress may take: the limits above, the request line, and ": " and CRLF per header.
HEAD_BYTES = MAX_URL + MAX_HEADER_BYTES + 4 * MAX_HEADERS + 1024
LINGER = 2.0
# Open files kept for all but HTTP connections: the Redis clients' pools, LDAP binds, vCenter sessions,
# log files. Of the rest, connections may hold three quarters; the last quarter answers refused ones.
OTHER_FILES = 256
REPORT_EVERY = 60.0  # seconds between log lines about refused or timed-out connections

Refusal = tuple[int, ErrorCode, str]


def budget(settings: HttpSettings, files: int) -> tuple[int, int]:
    """(the most connections open at once, the most files connections may hold, refused ones included)
    for a process that may open `files` files."""
    ceiling = max(16, files - OTHER_FILES)
    fits = ceiling * 3 // 4
    wanted = settings.max_connections
    if wanted is not None and wanted > fits:
        log.warning("http.max_connections is %d, but the process may open %d files: at most %d connections "
                    "are taken (raise the open-files limit: LimitNOFILE in systemd, minfds in supervisord)",
                    wanted, files, fits)
    return (fits if wanted is None else min(wanted, fits)), ceiling


def open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


class Connections:
    """The open connections of one server, in all and per client address, and what was refused."""

    def __init__(self, settings: HttpSettings, files: int) -> None:
        self.most, self.ceiling = budget(settings, files)
        self.most_per_address = settings.max_connections_per_address
        self.open = 0
        self.lingering = 0  # refused or timed out, answered, and reading what the client still sends
        self.by_address: Counter[str] = Counter()
        self.unreported: Counter[str] = Counter()
        self.reported = float("-inf")

    def admit(self, address: str | None) -> Refusal | None:
        if self.open >= self.most:
            return self.note(503, "over http.max_connections",
                             f"the server has {self.most} connections open, the most it takes; try again")
        if address is not None and self.most_per_address and self.by_address[address] >= self.most_per_address:
            return self.note(429, f"over http.max_connections_per_address from {address}",
                             f"{self.most_per_address} connections from {address} are open, the most one "
                             "address may hold")
        self.open += 1
        if address is not None:
            self.by_address[address] += 1
        return None

    def release(self, address: str | None) -> None:
        self.open -= 1
        if address is not None:
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]

    def may_linger(self) -> bool:
        return self.open + self.lingering < self.ceiling

    def note(self, status: int, why: str, reason: str) -> Refusal:
        """A refusal or a timeout: logged at once the first time, then counted, one line a minute."""
        self.unreported[why] += 1
        now = time.monotonic()
        if now - self.reported >= REPORT_EVERY:
            summary = ", ".join(f"{count} {what}" for what, count in self.unreported.most_common(5))
            log.warning("connections refused or cut off: %s (%d open)", summary, self.open)
            self.unreported.clear()
            self.reported = now
        code = ErrorCode.REQUEST_TIMEOUT if status == 408 else ErrorCode.TOO_MANY_CONNECTIONS
        return status, code, reason


class _Refused(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers with send_400_response."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # Set per server by `protocol()`; the defaults apply the time limits alone (no caps).
    _limits = HttpSettings()
    _caps: Connections | None = None

    _in_head = False  # between the first byte of a request and the end of its headers
    _head_bytes = 0  # bytes of the head in progress read after the read it began in
    _headers = 0
    _header_bytes = 0
    _refusal: Refusal | None = None
    _answered = False  # a refusal was sent: the rest of the connection is dropped
    _counted = False  # admitted by _caps, released when the connection ends
    _lingers = False
    _reading = ""  # "head" or "body" while a time limit runs
    _deadline = 0.0  # when what is being read must be complete (loop time)
    _timer: asyncio.TimerHandle | None = None
    _timer_at = 0.0

    # Connections and time limits -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._caps is not None:
            refusal = self._caps.admit(self._address())
            if refusal is not None:
                self._refusal = refusal
                self._answer()
                return
            self._counted = True
        self._limit("head", self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_limit()
        if self._caps is not None:
            if self._counted:
                self._caps.release(self._address())
            if self._lingers:
                self._caps.lingering -= 1
        self._counted = self._lingers = False
        super().connection_lost(exc)

    def _address(self) -> str | None:
        return self.client[0] if self.client else None  # None over a Unix socket: no per-address cap

    def _limit(self, reading: str, seconds: float) -> None:
        """The time limit on reading a request's head or body. One timer per connection, moved rather than
        replaced: each request of a kept-alive connection sets a deadline, and only one earlier than the
        timer's needs a new timer (uvloop's cost 3-4 us of CPU each to make and cancel, twice a request)."""
        self._reading = reading
        self._deadline = self.loop.time() + seconds
        if self._timer is None or self._deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._check_limit)

    def _stop_limit(self) -> None:
        self._reading = ""  # the timer lapses when it fires

    def _drop_limit(self) -> None:
        self._reading = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_limit(self) -> None:
        self._timer = None
        if not self._reading:
            return
        if self.loop.time() < self._deadline:  # a later request's deadline, set since the timer was made
            self._timer_at = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._check_limit)
            return
        self._too_slow()

    def _too_slow(self) -> None:
        if self.transport.is_closing() or self._answered:
            return
        cycle = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if self._reading == "head" and busy:
            cycle.keep_alive = False  # a pipelined request behind one still being answered: end with that answer
        elif self._reading == "head" and not self._in_head:
            self.transport.close()  # nothing of a request sent: an idle connection
        elif self._reading == "head":
            self._timed_out("head", self._limits.header_timeout)
        elif busy and not cycle.response_started:
            # The app is waiting for the body: it is told the client went away, and its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self._timed_out("body", self._limits.body_timeout)
        elif busy:
            cycle.keep_alive = False  # answered without waiting for the body: the connection ends after it
        else:
            self.transport.close()

    def _timed_out(self, part: str, seconds: float) -> None:
        key = "header_timeout" if part == "head" else "body_timeout"
        reason = f"the request {part} did not arrive within {seconds:g} s"
        self._refusal = self._caps.note(408, f"over http.{key}", reason) if self._caps else (
            408, ErrorCode.REQUEST_TIMEOUT, reason)
        self._answer()

    # Parsing ---------------------------------------------------------------------------------------

    def _refuse(self, status: int, code: ErrorCode, reason: str) -> None:
        self._refusal = (status, code, reason)
        raise _Refused(reason)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        was_in_head = self._in_head
        super().data_received(data)
        if was_in_head and self._in_head and not self.transport.is_closing():
            # The head began in an earlier read and is still not complete: all of this read is head.
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_BYTES:
                self._refusal = (431, ErrorCode.HEADERS_TOO_LARGE, f"request head over {HEAD_BYTES} bytes")
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._headers, self._header_bytes = True, 0, 0, 0
        if self._reading != "head":  # the first request's limit runs from the connection
            self._limit("head", self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL:
            self._refuse(414, ErrorCode.URL_TOO_LONG, f"request URL over {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._header_bytes += len(name) + len(value)
        if self._headers > MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, ErrorCode.HEADERS_TOO_LARGE,
                         f"more than {MAX_HEADERS} request headers, or over {MAX_HEADER_BYTES} bytes of them")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._limit("body", self._limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_limit()
        super().on_message_complete()

    # Answers ---------------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._answer()

    def _answer(self) -> None:
        """Send the refusal (or uvicorn's 400 for what it cannot parse) and end the connection."""
        status, code, reason = self._refusal or (400, ErrorCode.BAD_HTTP, "the request is not valid HTTP/1.1")
        self._drop_limit()
        self._answered = True
        if self.transport.is_closing():
            return
        body = json.dumps({"ok": False, "code": code.value, "reason": reason}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
        if status in (429, 503):
            head.append(b"retry-after: 1")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if self._caps is not None and not self._caps.may_linger():
            self.transport.close()  # files are short: no courtesy read (the client may see a reset)
            return
        if self._caps is not None:
            self._caps.lingering += 1
            self._lingers = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is complete, whatever the client still sends
        self.loop.call_later(LINGER, self.transport.close)


def protocol(settings: HttpSettings, files: int | None = None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class of one server: `settings`' time limits, and its own count of connections against
    the caps (sized for `files` open files, by default the process's limit)."""
    caps = Connections(settings, open_files_limit() if files is None else files)

    class ServerProtocol(LimitedHttpToolsProtocol):
        _limits = settings
        _caps = caps

    return ServerProtocol
