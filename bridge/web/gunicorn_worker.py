"""gunicorn's worker and logger classes for the bridge (see `Supervisor.start_web`).

gunicorn answers some requests itself, before the app sees them: a malformed request line or header (400), a
request line over `limit_request_line` (414), too many or too large headers (431). Its stock answer is an
HTML page; every other error of the bridge is JSON `{"error": ..., "message": ...}`, and senders and scripts
parse that. `JsonErrorThreadWorker` is gunicorn's threaded worker with the same statuses as gunicorn's own
`Worker.handle_error` (gunicorn/workers/base.py), the same log lines, and a JSON body.

`EscapingLogger` is gunicorn's logger whose error and access lines escape control characters like the bridge's
own records (`bridge.logformat`): the access log prints the decoded request path, so `GET /x%0Afake-line`
would otherwise write a line of the sender's choosing.

Slow clients (issue 13). gunicorn's worker gives a connection to a thread at its first byte, and the thread then
blocks reading the rest of the request with no deadline, so eight clients that send half a request hold every
thread, and /healthz, the alerts and every other request wait. `JsonErrorThreadWorker` therefore:

- reads each request in its event loop, without blocking, into a buffer of the connection until it is whole
  (`bridge.web.framing.frame_request`), and only then hands it to a thread, the buffered bytes given back to
  gunicorn's parser, so a thread never waits for a client;
- answers `408 Request Timeout` (JSON) and closes a connection that has not sent a whole request within the
  request read timeout (`BRIDGE_REQUEST_READ_TIMEOUT`, 10 s); an idle kept-alive one keeps gunicorn's keepalive;
- answers `GET /healthz` (and HEAD) in the event loop itself, as the app would, so liveness stays fast while
  every thread is busy (a locked database, say);
- closes connections after their last answer in the event loop too: gunicorn's graceful close waits up to 2 s
  for the client to close, on the event loop's thread, so a client that never closes stalled everything.

How many connections one worker holds is gunicorn's `worker_connections` (1000); the bridge serves plain HTTP,
so the TLS and HTTP/2 paths of gunicorn's worker are left as they are (they never read in the event loop).
"""

from __future__ import annotations

import errno
import json
import math
import os
import selectors
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
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
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader
from gunicorn.http.wsgi import Response, create, default_environ
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.logformat import JsonFormatter, escaping, log_format
from bridge.web.framing import BodyProgress, FrameState, Framing, Limits, frame_request
from bridge.web.requestid import REQUEST_ID_HEADER

# The longest piece of gunicorn's own description (which may quote the request line) put in a JSON answer.
MAX_DETAIL = 200

# How long a client has to send one whole request (head and body): from its connection, or from the first byte
# of its next request on a kept-alive connection. Datadog gives a webhook 15 s (webhooks/datadog/README.md, with
# its sources) and its requests arrive whole in milliseconds: 10 s leaves room for a slow network, and the sender
# still has its own time left to retry.
REQUEST_READ_TIMEOUT = 10.0
READ_TIMEOUT_VARIABLE = "BRIDGE_REQUEST_READ_TIMEOUT"

# At most this much is read from a connection per readiness event, so one fast sender does not keep the event
# loop from the others.
RECV_SIZE = 256 * 1024

# A closing connection is drained for this long and this much at most after its last answer, as gunicorn's
# util.close_graceful does (RFC 9112 section 9.6: closing with unread bytes would reset the connection and can
# destroy the answer before the client reads it).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024

# Health checks answered in the event loop in a row on one connection before the next goes to a thread.
MAX_PIPELINED_IN_LOOP = 16

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What the app's /healthz answers (bridge.web.ops.healthz: Flask's jsonify), byte for byte.
HEALTHZ_BODY = b'{"status":"ok"}\n'
HEALTHZ_REQUESTS = (b"GET /healthz HTTP/", b"HEAD /healthz HTTP/")
# Requests for /healthz with one of these headers go to the app: the guard judges Origin and Sec-Fetch-Site
# (bridge.web.access.check_browser), and a body, an expectation or an upgrade is gunicorn's to handle.
HEALTHZ_TO_THE_APP = frozenset({"ORIGIN", "SEC-FETCH-SITE", "TRANSFER-ENCODING", "EXPECT", "UPGRADE"})


def request_read_timeout(environ: Mapping[str, str]) -> float:
    """BRIDGE_REQUEST_READ_TIMEOUT in seconds (default REQUEST_READ_TIMEOUT); ConfigError naming it when wrong."""
    raw = environ.get(READ_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return REQUEST_READ_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise ConfigError(f"{READ_TIMEOUT_VARIABLE}={raw!r} is not a number of seconds above 0",
                          hint=f"set {READ_TIMEOUT_VARIABLE} to the seconds a client may take to send a request "
                               f"(default {REQUEST_READ_TIMEOUT:g}), or unset it")
    return seconds


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


@dataclass(eq=False)
class _Reading:
    """A connection whose request is being read in the event loop."""

    conn: Any  # gunicorn's TConn
    deadline: float
    buffer: bytearray
    body: BodyProgress | None = None  # once the head is in
    continued: bool = False  # "100 Continue" sent


@dataclass(eq=False)
class _Closing:
    """A connection answered for the last time: its write side is shut, what the client still sends is dropped."""

    conn: Any
    deadline: float
    drained: int = 0


class _ResponseBytes:
    """Stands in for the socket under gunicorn's Response: keeps what it writes, for one non-blocking send."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        """What gunicorn's util.write calls."""
        self.data += data


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose own error answers are JSON, and that reads requests in its event loop so
    slow clients cannot hold its threads (see the module docstring)."""

    alive: bool  # gunicorn's Worker attribute (untyped there), assigned here too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = REQUEST_READ_TIMEOUT
        self.limits = Limits(max_body=1024 * 1024)
        self.plain_http = False
        # Oldest first: every entry gets the same timeout, so the order of insertion is the order of deadlines.
        self.reading: dict[Any, _Reading] = {}
        self.closing: dict[Any, _Closing] = {}
        # Handed to a thread before their body was all in (gunicorn or the app refuses them from the head): the
        # thread must not wait for the rest of the body to keep the connection alive.
        self.unframed: set[Any] = set()

    def init_process(self) -> None:
        """Read the bridge's limits, then gunicorn's start (which runs the event loop and does not return)."""
        self.read_timeout = request_read_timeout(os.environ)
        self.limits = Limits.from_gunicorn(self.cfg, Settings.from_env(os.environ).max_body_bytes)
        # The bridge serves plain HTTP/1.1. TLS (a handshake before any request byte) and the PROXY protocol keep
        # gunicorn's own path, as do peers allowed HTTP/2 with prior knowledge (see reads_in_loop).
        self.plain_http = not self.cfg.is_ssl and getattr(self.cfg, "proxy_protocol", "off") in ("off", False, None)
        super().init_process()

    def reads_in_loop(self, conn: Any) -> bool:
        """Whether this connection's requests are read by the event loop (plain HTTP/1.x)."""
        return self.plain_http and not conn.is_http2 and not negotiation.prior_knowledge_allowed(self.cfg,
                                                                                                   conn.client)

    # -- gunicorn's event loop: new connections, kept-alive ones, finished requests, timeouts ------------------

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection and read its first request in the event loop (gunicorn: hand it to a thread)."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if self.reads_in_loop(conn):
            self.read_request(conn, b"")
        else:
            self.enqueue_req(conn)

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        """A kept-alive connection starts its next request: read it here, with a new deadline."""
        if not self.reads_in_loop(conn):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.read_request(conn, b"", readable=True)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A thread is done with a connection: close it in the event loop, read its next request, or keep it."""
        self.unframed.discard(conn)
        if not self.reads_in_loop(conn):
            super().finish_request(conn, fs)
            return
        try:
            keepalive = not fs.cancelled() and fs.result() is True
        except Exception:  # handle() catches everything itself; this is gunicorn's own safety net
            keepalive = False
        if not keepalive:
            self.close_gracefully(conn)
            return
        # The thread may have read the start of the client's next request (pipelining); that request is read
        # here like any other, or a thread would wait for its rest.
        pending = conn.parser.unreader.take_buffered()
        if pending:
            self.read_request(conn, pending)
            return
        super().finish_request(conn, fs)  # parks the connection as kept-alive, as gunicorn does

    def murder_pending(self) -> None:
        """gunicorn's sweep of deferred connections, then the request deadlines and the closing connections."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            reading = next(iter(self.reading.values()))
            if reading.deadline > now:
                break
            self.expire(reading)
        if not self.alive:
            # A stopping worker closes connections that sent nothing for STOP_KEEPALIVE_LINGER, as gunicorn does
            # with kept-alive ones, rather than wait out their request deadline.
            for reading in [r for r in self.reading.values() if not r.buffer
                            and now - (r.deadline - self.read_timeout) >= STOP_KEEPALIVE_LINGER]:
                self.expire(reading)
        while self.closing:
            closing = next(iter(self.closing.values()))
            if closing.deadline > now:
                break
            self.finish_closing(closing)

    def expire(self, reading: _Reading) -> None:
        """Past its deadline: 408 to a client that sent part of a request, a plain close to one that sent none."""
        self.stop_reading(reading)
        if not reading.buffer:
            self.close_now(reading.conn)
            return
        self.log.warning("Request timeout from ip=%s: no whole request within %gs (%d bytes received)",
                         _ip(reading.conn.client), self.read_timeout, len(reading.buffer))
        self.answer_and_close(reading.conn, ErrorAnswer(
            408, "Request Timeout",
            f"the request did not arrive whole within {self.read_timeout:g} s; send it again"))

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        # Runs in the thread. gunicorn drains an unread body before keeping a connection alive, for up to 5 s:
        # the body of a request handed over early (refused from its head) may never come, so close instead.
        if conn in self.unframed:
            return False
        return bool(super()._keepalive_after(conn, keepalive))

    # -- reading a request in the event loop -----------------------------------------------------------------

    def read_request(self, conn: Any, data: bytes, *, readable: bool = False) -> None:
        """Read `conn`'s next request, starting with `data` already received, until it is whole."""
        reading = self.start_reading(conn, data)
        if readable:
            self.on_request_bytes(reading, conn.sock)
        elif data:
            self.advance(reading)

    def start_reading(self, conn: Any, data: bytes) -> _Reading:
        """Put the connection on the poller for its next request, with a new deadline."""
        reading = _Reading(conn, time.monotonic() + self.read_timeout, bytearray(data))
        self.reading[conn] = reading
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, reading))
        return reading

    def on_request_bytes(self, reading: _Reading, _sock: Any) -> None:
        """The connection is readable: take what arrived, and act once the request is whole."""
        try:
            chunk = reading.conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            # The client closed before sending a whole request: nobody is left to answer.
            self.stop_reading(reading)
            self.close_now(reading.conn)
            return
        reading.buffer += chunk
        self.advance(reading)

    def advance(self, reading: _Reading) -> None:
        """Frame the buffered bytes; hand a whole request over, or answer it here."""
        try:
            self._advance(reading)
        except Exception:
            # A failure here would end the event loop, and the worker with every connection it holds.
            self.log.exception("Error reading a request from ip=%s", _ip(reading.conn.client))
            if reading.conn.sock.fileno() != -1 and reading.conn not in self.closing:
                self.stop_reading(reading)
                self.close_now(reading.conn)

    def _advance(self, reading: _Reading) -> None:
        answered = 0
        while True:
            framing = frame_request(reading.buffer, self.limits, reading.body)
            if framing.state is FrameState.INCOMPLETE:
                reading.body = framing.body
                if framing.expects_continue and not reading.continued:
                    # The client waits for this before it sends the body (RFC 9110 section 10.1.1). gunicorn
                    # sends its own later, once the thread has the request: a second 100 is allowed (15.2).
                    reading.continued = True
                    self.send_now(reading.conn, CONTINUE)
                return
            self.stop_reading(reading)
            conn, data = reading.conn, bytes(reading.buffer)
            if framing.state is FrameState.REFUSE:
                self.refuse(conn, framing)
                return
            if framing.state is FrameState.HAND_OVER:
                self.hand_over(conn, data, whole=False)
                return
            # A client pipelining health checks gets a few answered here per turn, then a thread's turn, so it
            # cannot keep the event loop from everyone else.
            kept = self.answer_healthz(conn, data[:framing.end]) if answered < MAX_PIPELINED_IN_LOOP else None
            if kept is None:
                self.hand_over(conn, data, whole=True)
                return
            answered += 1
            if not kept:
                return
            if len(data) == framing.end:
                self.keep_alive(conn)
                return
            reading = self.start_reading(conn, data[framing.end:])  # the next request, pipelined

    def stop_reading(self, reading: _Reading) -> None:
        """Forget the reading and take the connection off the poller."""
        self.reading.pop(reading.conn, None)
        _unregister(self.poller, reading.conn.sock)

    def hand_over(self, conn: Any, data: bytes, *, whole: bool) -> None:
        """Give the request to a thread: gunicorn's parser reads `data` first, as it does with an h2c preface."""
        if not whole:
            self.unframed.add(conn)
        conn.init()  # plain HTTP/1.x: only makes the parser (reads_in_loop)
        conn.parser.unreader.unread(data)
        self.enqueue_req(conn)

    def refuse(self, conn: Any, framing: Framing) -> None:
        """Answer a request over one of the event loop's own limits, in JSON, and close."""
        if framing.status == 431:
            answer = error_answer(LimitRequestHeaders(framing.why))
        else:
            answer = ErrorAnswer(413, "Payload Too Large",
                                 f"{framing.why}; send at most {self.limits.max_body} bytes (BRIDGE_MAX_BODY_BYTES)")
        self.log.warning("Invalid request from ip=%s: %s", _ip(conn.client), framing.why)
        self.answer_and_close(conn, answer)

    # -- /healthz in the event loop --------------------------------------------------------------------------

    def answer_healthz(self, conn: Any, head: bytes) -> bool | None:
        """Answer a whole `GET /healthz` (or HEAD) here as the app would: whether the connection stays open for
        another request; None, answering nothing, for any other request.

        Liveness must not wait for a thread: every thread may be held by a slow database. gunicorn's parser
        still reads the request, so a request it refuses gets its usual answer, from a thread.
        """
        if not head.removeprefix(b"\r\n").startswith(HEALTHZ_REQUESTS):
            return None
        started = datetime.now()
        try:
            req = Request(self.cfg, IterUnreader([head]), conn.client)
            names = {name for name, _ in req.headers}
            if (req.uri != "/healthz" or names & HEALTHZ_TO_THE_APP
                    or any(name == "CONTENT-LENGTH" and value != "0" for name, value in req.headers)):
                return None
            out = _ResponseBytes()
            resp, environ = create(req, out, conn.client, conn.server, self.cfg)
        except Exception:  # gunicorn refuses it: a thread gives its answer
            return None
        # As gunicorn's handle_request (gthread.py): the request count, and when to close.
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        if not self.alive or not self.cfg.keepalive or len(self.keepalived_conns) >= self.max_keepalived:
            resp.force_close()
        resp.start_response("200 OK", [("Content-Type", "application/json"),
                                       ("Content-Length", str(len(HEALTHZ_BODY)))])
        resp.write(HEALTHZ_BODY)
        resp.close()
        self.log.access(resp, req, environ, datetime.now() - started)
        if not self.send_now(conn, bytes(out.data)):
            self.close_now(conn)  # a client that does not read its answers gets no more of them
            return False
        if resp.should_close():
            self.close_gracefully(conn)
            return False
        return True

    def keep_alive(self, conn: Any) -> None:
        """Wait for the connection's next request for gunicorn's keepalive timeout, as gunicorn does."""
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    # -- writing and closing without blocking ----------------------------------------------------------------

    def send_now(self, conn: Any, data: bytes) -> bool:
        """Write `data` if the socket takes it all at once (a few hundred bytes always fit, unless the client
        stopped reading); False otherwise."""
        try:
            return int(conn.sock.send(data)) == len(data)
        except OSError:
            return False

    def answer_and_close(self, conn: Any, answer: ErrorAnswer) -> None:
        """Write a JSON error answer (write_json_error) and close the connection gracefully."""
        try:
            write_json_error(conn.sock, answer)
        except OSError:  # the client is gone, or does not read: it gets nothing
            self.close_now(conn)
            return
        self.close_gracefully(conn)

    def close_gracefully(self, conn: Any) -> None:
        """gunicorn's util.close_graceful, in the event loop: shut the write side, then drop what the client
        still sends until it closes, LINGER_SECONDS or LINGER_MAX_BYTES (gunicorn waits in place, on the thread
        of the event loop)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now(conn)
            return
        conn.sock.setblocking(False)
        closing = _Closing(conn, time.monotonic() + LINGER_SECONDS)
        self.closing[conn] = closing
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_closing_bytes, closing))

    def on_closing_bytes(self, closing: _Closing, _sock: Any) -> None:
        """Drop what a closing connection's client sends; close on its close or past LINGER_MAX_BYTES."""
        try:
            chunk = closing.conn.sock.recv(LINGER_MAX_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        closing.drained += len(chunk)
        if not chunk or closing.drained >= LINGER_MAX_BYTES:
            self.finish_closing(closing)

    def finish_closing(self, closing: _Closing) -> None:
        """Close a lingering connection for good."""
        self.closing.pop(closing.conn, None)
        _unregister(self.poller, closing.conn.sock)
        self.close_now(closing.conn)

    def close_now(self, conn: Any) -> None:
        """Close a connection that is on no list and not on the poller, and count it gone."""
        self.nr_conns -= 1
        conn.close()

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


def _ip(client: Any) -> str:
    """The peer's address for a log line ('' for a unix socket)."""
    return str(client[0]) if isinstance(client, tuple) else ""


def _unregister(poller: selectors.BaseSelector, sock: socket.socket) -> None:
    try:
        poller.unregister(sock)
    except (KeyError, ValueError, OSError):  # not registered
        pass


class EscapingLogger(glogging.Logger):
    """gunicorn's logger with every handler's formatter made escaping (one line per record); with
    BRIDGE_LOG_FORMAT=json, its error and access lines are JSON objects like the bridge's own."""

    json_lines = False

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (also run on a config reload), then escaping (or JSON) formatters on its handlers."""
        super().setup(cfg)
        # Checked by the supervisor before gunicorn starts: a wrong value never gets here, text if it did.
        try:
            self.json_lines = log_format(os.environ) == "json"
        except ConfigError:
            self.json_lines = False
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter() if self.json_lines else escaping(handler.formatter))

    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> None:
        """gunicorn's access line; as JSON, its facts are fields: method, path (without the query string, which
        may hold a generic source's token), status, bytes, duration_ms, remote_addr and the request id the app
        answered with (`X-Request-Id`)."""
        if not self.json_lines:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        status = resp.status_code if isinstance(getattr(resp, "status_code", None), int) else None
        if status is None:
            status_text = str(getattr(resp, "status", "") or "").split(" ", 1)[0]
            status = int(status_text) if status_text.isdigit() else None
        request_id = next((str(v) for k, v in (getattr(resp, "headers", None) or [])
                           if str(k).lower() == REQUEST_ID_HEADER.lower()), None)
        path = str(environ.get("PATH_INFO") or getattr(req, "path", "") or "")
        method = str(environ.get("REQUEST_METHOD") or getattr(req, "method", "") or "")
        duration_ms = round(request_time.total_seconds() * 1000, 3)
        try:
            self.access_log.info("%s %s %s", method, path, status, extra={
                "method": method, "path": path, "status": status, "duration_ms": duration_ms,
                "bytes": getattr(resp, "sent", None), "remote_addr": str(environ.get("REMOTE_ADDR") or ""),
                "request_id": request_id})
        except Exception:
            self.exception("cannot write an access line")
