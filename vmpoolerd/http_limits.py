"""uvicorn's httptools protocol, with limits on the request head and JSON answers for bad requests.

httptools (llhttp) sets no limit of its own: a 10 MB header, or ten thousand of them, is read into
memory and handed to the app. Here the head is measured while it is parsed, and refused before the app
runs (limits in vmpoolerd/api/errors.py, which guard.py applies too, for any other server):
- a request target over MAX_URL bytes -> 414;
- more than MAX_HEADERS headers, or more than MAX_HEADER_BYTES of names and values -> 431;
- a single header that never ends is cut off too, once the bytes read for the head in progress pass
  HEAD_BYTES (httptools keeps a header to itself until it is complete: only the bytes read show it);
- anything unparsable -> 400 (uvicorn's own plain-text answer, made JSON like every other error).
Each is answered `{"ok": false, "reason": ...}` and the connection is closed: the parser cannot find the
next request in the middle of a refused one. Not at once, though: what the client is still sending is
read and dropped for up to LINGER seconds first, because closing a socket with unread data resets the
connection, and a client still writing its 10 MB header would lose the answer with it.

Each new connection is set up by uvicorn's own `connection_made`. A re-implementation that learnt the
addresses with two system calls instead of seven saved 3-7% of a request's server CPU with a new
connection per request, less with keep-alive (bench/api_load.py): too little to rely on uvicorn's
internals for.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .api.errors import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL

# The most a head in progress may take: the limits above, the request line, and ": " and CRLF per header.
HEAD_BYTES = MAX_URL + MAX_HEADER_BYTES + 4 * MAX_HEADERS + 1024
LINGER = 2.0


class _Refused(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers with send_400_response."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _in_head = False  # between the first byte of a request and the end of its headers
    _head_bytes = 0  # bytes of the head in progress read after the read it began in
    _headers = 0
    _header_bytes = 0
    _refusal: tuple[int, str] | None = None
    _answered = False  # a refusal was sent: the rest of the connection is dropped

    def _refuse(self, status: int, reason: str) -> None:
        self._refusal = (status, reason)
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
                self._refusal = (431, f"request head over {HEAD_BYTES} bytes")
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._headers, self._header_bytes = True, 0, 0, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL:
            self._refuse(414, f"request URL over {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._header_bytes += len(name) + len(value)
        if self._headers > MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"more than {MAX_HEADERS} request headers, or over {MAX_HEADER_BYTES} bytes of them")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        status, reason = self._refusal or (400, "the request is not valid HTTP/1.1")
        body = json.dumps({"ok": False, "reason": reason}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self._answered = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is complete, whatever the client still sends
        self.loop.call_later(LINGER, self.transport.close)

