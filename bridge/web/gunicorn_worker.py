"""gunicorn's worker and logger classes for the bridge (see `Supervisor.start_web`).

gunicorn answers some requests itself, before the app sees them: a malformed request line or header (400), a
request line over `limit_request_line` (414), too many or too large headers (431). Its stock answer is an
HTML page; every other error of the bridge is JSON `{"error": ..., "message": ...}`, and senders and scripts
parse that. `JsonErrorThreadWorker` is gunicorn's threaded worker with the same statuses as gunicorn's own
`Worker.handle_error` (gunicorn/workers/base.py), the same log lines, and a JSON body.

`EscapingLogger` is gunicorn's logger whose error and access lines escape control characters like the bridge's
own records (`bridge.logformat`): the access log prints the decoded request path, so `GET /x%0Afake-line`
would otherwise write a line of the sender's choosing.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime
from ssl import SSLError
from typing import Any

from gunicorn import glogging, util
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    ConfigurationProblem,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidH2CPreface,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidProxyLine,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    UnsupportedTransferCoding,
)
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.gthread import ThreadWorker

from bridge.logformat import escaping

# The longest piece of gunicorn's own description (which may quote the request line) put in a JSON answer.
MAX_DETAIL = 200


@dataclass(frozen=True)
class ErrorAnswer:
    """What gunicorn's parser error becomes: status line, JSON `error` code and `message`."""

    status: int
    reason: str
    message: str
    client_error: bool = True

    @property
    def code(self) -> str:
        """The JSON `error` code, spelled like the app's HTTP errors: the reason in snake case."""
        return self.reason.lower().replace(" ", "_")

    def body(self) -> bytes:
        """The JSON body (ASCII: control characters and non-ASCII of a quoted request line are escaped)."""
        return json.dumps({"error": self.code, "message": self.message}).encode("ascii")


def _detail(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


# gunicorn's client errors (Worker.handle_error), most specific first; anything else is gunicorn's 400.
_SPECIAL: tuple[tuple[tuple[type[BaseException], ...], int, str, str], ...] = (
    ((LimitRequestLine,), 414, "URI Too Long",
     "the request line is too long; send the data in the body, not the URL"),
    ((LimitRequestHeaders,), 431, "Request Header Fields Too Large",
     "too many or too large request headers"),
    ((UnsupportedTransferCoding,), 501, "Not Implemented", "unsupported Transfer-Encoding"),
    ((ExpectationFailed,), 417, "Expectation Failed", "cannot comply with the Expect header"),
    ((ForbiddenProxyRequest,), 403, "Forbidden", "request forbidden"),
    ((SSLError,), 403, "Forbidden", "TLS error"),
    ((ConfigurationProblem,), 500, "Internal Server Error", "server configuration problem"),
)
_CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidRequestLine, InvalidRequestMethod, InvalidHTTPVersion, InvalidHeader, InvalidHeaderName,
    LimitRequestLine, LimitRequestHeaders, InvalidProxyLine, ForbiddenProxyRequest, InvalidSchemeHeaders,
    UnsupportedTransferCoding, ConfigurationProblem, ObsoleteFolding, ExpectationFailed, InvalidH2CPreface,
    SSLError, InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension,
)


def error_answer(exc: BaseException) -> ErrorAnswer:
    """The status and JSON message gunicorn's `Worker.handle_error` would answer `exc` with.

    A response header the application tried to send is the application's fault (500), as in gunicorn.
    """
    if isinstance(exc, (InvalidResponseHeader, InvalidResponseHeaderName)) or not isinstance(exc, _CLIENT_ERRORS):
        return ErrorAnswer(500, "Internal Server Error", "the server failed to handle the request; retry",
                           client_error=False)
    for classes, status, reason, text in _SPECIAL:
        if isinstance(exc, classes):
            return ErrorAnswer(status, reason, f"{text} ({_detail(exc)})")
    return ErrorAnswer(400, "Bad Request", f"malformed HTTP request: {_detail(exc)}")


def write_json_error(sock: socket.socket, answer: ErrorAnswer) -> None:
    """Write `answer` as a complete HTTP/1.1 response that closes the connection (like gunicorn's HTML one)."""
    body = answer.body()
    head = (f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose own error answers are JSON (see the module docstring)."""

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """Log like gunicorn, answer `exc` with gunicorn's status and a JSON body, and write the access line."""
        request_start = datetime.now()
        addr = addr or ("", -1)  # unix socket
        answer = error_answer(exc)
        if answer.client_error:
            if not req and isinstance(exc, (InvalidHeader, InvalidHeaderName)) and hasattr(exc, "req"):
                req = exc.req  # for the access log, as gunicorn does
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        elif hasattr(req, "uri") and hasattr(req, "method"):
            self.log.exception("Error handling request %s %s", req.method, req.uri)
        elif hasattr(req, "uri"):
            self.log.exception("Error handling request %s", req.uri)
        else:
            self.log.exception("Error handling request (no URI read)")

        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"] = addr[0]
            environ["REMOTE_PORT"] = str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status = f"{answer.status} {answer.reason}"
            resp.response_length = len(answer.body())
            self.log.access(resp, req, environ, datetime.now() - request_start)

        try:
            write_json_error(client, answer)
        except Exception:  # the client is gone; nothing left to tell it
            self.log.debug("Failed to send error message.")


class EscapingLogger(glogging.Logger):
    """gunicorn's logger with every handler's formatter made escaping (one line per record)."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (also run on a config reload), then escaping formatters on its handlers."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(escaping(handler.formatter))
