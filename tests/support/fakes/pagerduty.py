"""A stateful loopback fake of PagerDuty (Events API v2 + REST API v2) for integration tests.

One `FakePagerDuty` is one real HTTP(S) server on `127.0.0.1:<random port>` serving **both** path sets:
the real hosts differ (`events.pagerduty.com/v2/...` and `api.pagerduty.com/...`) but the paths do not overlap,
so on loopback one server and one state object are enough. That is what makes this possible::

    events_client.trigger(...)                           # POST /v2/enqueue creates an alert and its incident
    rest.jget("/incidents", params={"incident_key": k})  # ...which the REST API then finds by incident_key

Usage (as a context manager; the `fake_pagerduty` fixture below does the same)::

    from tests.support.fakes.pagerduty import FakePagerDuty

    with FakePagerDuty() as pd:
        events = pd.events_client()                      # pagerduty.EventsApiV2Client aimed at the fake
        key = events.trigger("CPU > 90% on web-1", "web-1", dedup_key="dd:1234")
        pd.fail(503, times=2, api="events")              # the next two event posts answer 503
        pd.delay(5.0, api="events")                      # the next one answers nothing for 5 s
        pd.drop(api="events")                            # the next one is cut off without an answer
        rest = pd.rest_client()                          # pagerduty.RestApiV2Client (From: bridge@example.com)
        incident = rest.jget("/incidents", params={"incident_key": key})["incidents"][0]
        rest.rpost(f"/incidents/{incident['id']}/responder_requests", json={...})
        pd.answer_responder_request(incident["id"], "PUSER02", accepted=True)
        pd.assert_no_invalid_requests()                  # nothing we sent broke the published schema

Why HTTPS by default: the `pagerduty` clients refuse any base URL that is not `https://`. The fake makes a
self-signed certificate for 127.0.0.1 (with `cryptography`); give clients `verify=pd.ssl_context` (the
`*_client()` helpers do). Pass `tls=False` for plain HTTP (e.g. for a raw httpx2 client or a subprocess).

What the fake checks (all requests, both APIs)
- Events bodies against `events-v2.json`, REST bodies and query enums against `rest.json` (see
  `tests.support.fakes.schema` for the overrides), plus PagerDuty's documented limits the schemas omit (each cited
  where it is enforced). A rejected request answers 400 in the API's own error shape and is appended to
  `invalid_requests`, so a test ends with `pd.assert_no_invalid_requests()`.
- REST headers: `Authorization: Token token=...` (or `Bearer`), `Accept: application/vnd.pagerduty+json;version=2`,
  `Content-Type: application/json` on bodies, and `From` (a known user's email) where the spec requires it.

Fault injection (shared by `FakeDatadog`, see `LoopbackServer`): `fail(status, times)`, `delay(seconds, times)`,
`drop(times)`, each optionally limited to `api="events"|"rest"` or a `path` prefix; `latency(seconds, api=...)`
answers every matching request that much later (a slow API, not a fault). Faulted requests are not
ingested (like PagerDuty, which does not ingest an event it answered 429). Real rate limits are optional:
`events_rate_limit_per_minute=120` (per routing key, sliding 60 s) and `rest_rate_limit_per_minute=960` (per
API key), counted on the injectable `clock` (`ManualClock` lets a test move time without sleeping).

Assertion helpers: `events`, `change_events`, `dropped_events`, `triggers_for()`, `alerts`, `open_alerts()`,
`alert()`, `incidents`, `incident()`, `incidents_for()`, `open_incidents()`, `invalid_requests`, `requests`,
`requests_to()`, `assert_no_invalid_requests()`, and `wait_for(predicate, timeout)` for asynchronous senders.
Scripting state: `seed_open_incidents()` (incidents a test starts from, as triggers would have opened them),
`answer_responder_request()`, `set_past_incidents()`, `set_related_incidents()`, and the
mutable `abilities` set (remove `"coordinated_responding"` for the 402 path of responder requests, or
`"status_updates"` for that of `POST /incidents/{id}/status_updates`; the posted updates are in each incident's
`status_updates`).

Approximations, stated so nobody relies on them: ids are deterministic (`PI00001`, ...), not PagerDuty's; the
401/403 error codes and texts, the "Invalid routing key" 400 and the change-event answer are modelled on
PagerDuty's documented shapes but not on captured responses; responder-request log entries use the spec's
`notify_log_entry`/`assign_log_entry` types because the spec lists no responder-specific type.
"""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import json
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.support.fakes.schema import OpenApiSpec, events_spec, rest_spec

# ---------------------------------------------------------------------------------------------------------------
# Shared machinery: clock, TLS material, request log, fault queue, the loopback server base class.
# (FakeDatadog in tests/support/fakes/datadog.py builds on the same base.)
# ---------------------------------------------------------------------------------------------------------------

Clock = Callable[[], float]
"""Seconds since the epoch. The default is `time.time`; tests inject a `ManualClock`."""


class ManualClock:
    """A clock that only moves when told to: for rate-limit windows and timestamps without sleeping."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        """Start at `start` seconds since the epoch."""
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current fake time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`."""
        with self._lock:
            self._now += seconds


def iso(ts: float) -> str:
    """`2026-01-01T00:00:00Z`: PagerDuty's timestamp style, from epoch seconds."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp (a trailing `Z` and naive times are taken as UTC)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


@dataclass(frozen=True)
class TlsMaterial:
    """A self-signed certificate for 127.0.0.1/localhost, on disk (the ssl module loads chains from files)."""

    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        """Server-side context presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Client-side context that trusts exactly this certificate (pass as httpx2 `verify=`)."""
        return ssl.create_default_context(cafile=self.cert_file)


@dataclass
class _TlsCache:
    material: TlsMaterial | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_TLS = _TlsCache()


def tls_material() -> TlsMaterial:
    """The process-wide certificate (made once: key generation is the slow part), removed at exit."""
    with _TLS.lock:
        if _TLS.material is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "incident-bridge test fake")])
            now = dt.datetime.now(dt.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                    ),
                    critical=False,
                )
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            directory = tempfile.mkdtemp(prefix="bridge-fake-tls-")
            atexit.register(shutil.rmtree, directory, True)
            cert_file, key_file = f"{directory}/cert.pem", f"{directory}/key.pem"
            with open(cert_file, "wb") as handle:
                handle.write(cert.public_bytes(serialization.Encoding.PEM))
            with open(key_file, "wb") as handle:
                handle.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            _TLS.material = TlsMaterial(cert_file, key_file)
        return _TLS.material


@dataclass
class RecordedRequest:
    """One request as the fake saw it, with what the fake did about it.

    `outcome` is one of: `accepted`, `dropped` (Events API: a 202'd ack/resolve that matched no open alert),
    `invalid` (400 for a malformed request; also in `invalid_requests`), `unauthorized`, `forbidden`,
    `missing_ability`, `not_found`, `conflict`, `rate_limited`, `fault:fail`, `fault:delay`, `fault:drop`.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: float
    api: str = ""
    status: int | None = None  # None when no answer was sent (drop, or delay then drop)
    outcome: str = ""
    errors: list[str] = field(default_factory=list)

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass
class Reply:
    """What a handler answers: a status, a JSON-able body (None = no body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """A scripted misbehaviour applied to the next `remaining` matching requests."""

    kind: Literal["fail", "delay", "drop"]
    remaining: int
    status: int = 0
    seconds: float = 0.0
    then_process: bool = False
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    api: str | None = None
    path: str | None = None
    routing_key: str | None = None  # Events API only: the event's routing_key

    def matches(self, request: RecordedRequest) -> bool:
        """Whether this fault applies to `request` (its api, path-prefix and routing-key filters)."""
        if self.api is not None and request.api != self.api:
            return False
        if self.routing_key is not None and _routing_key_of(request) != self.routing_key:
            return False
        return self.path is None or request.path.startswith(self.path)


def _routing_key_of(request: RecordedRequest) -> str | None:
    """The routing_key of an Events API request's JSON body (None for another body)."""
    try:
        body = request.json()
    except ValueError:
        return None
    return body.get("routing_key") if isinstance(body, dict) else None


class SlidingWindowLimiter:
    """At most `limit` admissions per key over the last `window` seconds of `clock` (PagerDuty's model)."""

    def __init__(self, limit: int, clock: Clock, window: float = 60.0) -> None:
        """`limit` admissions per `window` seconds, per key."""
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def admit(self, key: str) -> tuple[bool, int, int]:
        """Admit one request for `key` if there is room: (admitted, remaining, seconds until a slot frees)."""
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            reset = max(1, int(hits[0] + self.window - now + 0.999))
            return False, 0, reset
        hits.append(now)
        reset = int(hits[0] + self.window - now + 0.999)
        return True, self.limit - len(hits), reset


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect; a drop must then close explicitly
    server_version = "incident-bridge-fake/1"
    # Headers and body leave in one buffered write, with Nagle off: otherwise each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _HttpServer

    def _serve(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Silent: the request log is `fake.requests`, and stderr noise hides test failures."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a delay must never keep the test process alive
    fake: LoopbackServer


_MAX_BODY = 8 * 1024 * 1024  # far above PagerDuty's 512 KB, so the fake can still answer "too large" in-protocol


class LoopbackServer:
    """Base of the fakes: a `ThreadingHTTPServer` on 127.0.0.1:0 in a daemon thread, a request log and faults.

    Subclasses implement `_handle(request) -> Reply`, `_api_of(path)` and `_fault_reply(request, fault)`.
    Handlers run one at a time under `self.lock`, so state needs no further locking; delays sleep outside it.
    """

    def __init__(self, *, tls: bool = False, clock: Clock | None = None) -> None:
        """Build the server; call `start()` or use `with` (the port is only bound on start)."""
        self.tls = tls
        self.clock: Clock = clock or time.time
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.invalid_requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._latencies: dict[tuple[str | None, str | None], float] = {}  # (api, path prefix) -> seconds
        self._changed = threading.Condition(self.lock)  # notified after every request, for wait_for()
        self._stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread. Returns self."""
        if self._httpd is not None:
            return self
        httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        if self.tls:
            # Handshake lazily in the handler thread: a handshake in accept() would stall the accept loop.
            httpd.socket = (
                tls_material()
                .server_context()
                .wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
            )
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{type(self).__name__}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; wakes handlers blocked in a `delay`."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:  # Any: subclasses return themselves without re-declaring
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (start() first)."""
        if self._httpd is None:
            raise RuntimeError("the fake is not started; use `with` or call start()")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """`https://127.0.0.1:<port>` (or `http://` with tls=False), without a trailing slash."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to pass as httpx2 `verify=`: a context trusting the fake's certificate (True without TLS)."""
        return tls_material().client_context() if self.tls else True

    @property
    def ca_file(self) -> str | None:
        """Path of the fake's certificate in PEM, for clients that take a CA file (None without TLS)."""
        return tls_material().cert_file if self.tls else None

    def http_client(self, **kwargs: Any) -> httpx2.Client:
        """An `httpx2.Client` with `base_url=self.url` that trusts the fake; kwargs go to httpx2.Client."""
        kwargs.setdefault("verify", self.ssl_context)
        kwargs.setdefault("timeout", 10.0)
        return httpx2.Client(base_url=self.url, **kwargs)

    # -- fault injection ----------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        api: str | None = None,
        path: str | None = None,
        routing_key: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (5xx, 429, ...) without ingesting them.

        The body defaults to the API's own error shape for that status (a 429 on the Events API has none);
        pass `body`/`headers` to override. `api`/`path` limit the fault to one API or a path prefix,
        `routing_key` to the events sent with that integration key (one service down, another up).
        """
        self._add(Fault("fail", times, status=status, body=body, headers=dict(headers or {}), api=api, path=path,
                        routing_key=routing_key))

    def delay(
        self,
        seconds: float,
        times: int = 1,
        *,
        then_process: bool = False,
        api: str | None = None,
        path: str | None = None,
    ) -> None:
        """Hold the next `times` matching requests for `seconds`, to make clients time out.

        Afterwards the connection is closed without an answer and nothing is ingested, unless `then_process`:
        then the request is handled normally, late (PagerDuty got it although the client gave up: the case
        that makes retries create duplicates unless dedup keys are stable).
        """
        self._add(Fault("delay", times, seconds=seconds, then_process=then_process, api=api, path=path))

    def drop(self, times: int = 1, *, api: str | None = None, path: str | None = None) -> None:
        """Close the connection of the next `times` matching requests without answering (a transport error)."""
        self._add(Fault("drop", times, api=api, path=path))

    def latency(self, seconds: float, *, api: str | None = None, path: str | None = None) -> None:
        """Answer every matching request `seconds` late, from now on: a constant round trip, as to a distant API
        (a `delay` fault holds a few requests and then cuts them). `api`/`path` limit it to one API or a path
        prefix; setting the same filter again replaces the value, and 0 removes it. Requests are still recorded
        on arrival; with several matching filters the longest applies."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self.lock:
            if seconds:
                self._latencies[(api, path)] = seconds
            else:
                self._latencies.pop((api, path), None)

    def _latency_of(self, request: RecordedRequest) -> float:
        with self.lock:
            return max((seconds for (api, path), seconds in self._latencies.items()
                        if api in (None, request.api) and (path is None or request.path.startswith(path))),
                       default=0.0)

    def clear_faults(self) -> None:
        """Forget all scripted faults not yet used."""
        with self.lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many faulted requests are still scripted."""
        with self.lock:
            return sum(f.remaining for f in self._faults)

    def _add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self.lock:
            self._faults.append(fault)

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        """The first scripted fault matching `request`, consumed by one (faults apply in the order scripted)."""
        with self.lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- assertions ---------------------------------------------------------------------------------------

    def requests_to(self, path_prefix: str = "", method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path starts with `path_prefix` (and with `method`, if given)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
            ]

    def assert_no_invalid_requests(self) -> None:
        """Fail with the details when any request broke the published contract."""
        with self.lock:
            bad = list(self.invalid_requests)
        if bad:
            lines = [f"{r.method} {r.path} -> {r.status}: {'; '.join(r.errors)}" for r in bad]
            raise AssertionError(f"{len(bad)} invalid request(s) reached {type(self).__name__}:\n" + "\n".join(lines))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Block until `predicate()` is truthy (re-checked after each request the fake serves) or `timeout`.

        Returns the predicate's last value, so `assert fake.wait_for(lambda: fake.triggers_for("k"))` reads
        well. For tests of asynchronous senders (the delivery worker) instead of sleeping a fixed time.
        """
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # -- subclass hooks -----------------------------------------------------------------------------------

    def _api_of(self, path: str) -> str:
        return ""

    def _handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def _fault_reply(self, request: RecordedRequest, fault: Fault) -> Reply:
        return Reply(fault.status, fault.body, dict(fault.headers))

    def _reject(self, request: RecordedRequest, reply: Reply, errors: list[str]) -> Reply:
        """Mark `request` invalid (recorded for assertions) and answer `reply`."""
        request.outcome = "invalid"
        request.errors = list(errors)
        self.invalid_requests.append(request)
        return reply

    # -- the request cycle --------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self._write(handler, Reply(413, {"error": "request body too large or unreadable"}))
            handler.close_connection = True
            return
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            received_at=self.clock(),
            api=self._api_of(parts.path),
        )
        with self.lock:
            self.requests.append(request)
        latency = self._latency_of(request)
        if latency:
            self._stopping.wait(latency)  # outside the lock: concurrent requests wait side by side, as on a network
        fault = self._take_fault(request)
        if fault is not None:
            request.outcome = f"fault:{fault.kind}"
            if fault.kind == "delay":
                self._stopping.wait(fault.seconds)
                if fault.then_process and not self._stopping.is_set():
                    request.outcome = ""
                    fault = None
            if fault is not None and fault.kind in ("delay", "drop"):
                self._cut(handler)
                self._notify()
                return
            if fault is not None:
                reply = self._fault_reply(request, fault)
                request.status = reply.status
                self._write(handler, reply)
                self._notify()
                return
        try:
            with self.lock:
                reply = self._handle(request)
        except Exception as error:  # a bug in the fake must show as a 500 with the reason, not a hang
            reply = Reply(500, {"error": {"message": f"fake bug: {error!r}", "code": 0}})
            request.outcome = "fake_error"
            request.errors = [repr(error)]
        request.status = reply.status
        if not request.outcome:
            request.outcome = "accepted" if reply.status < 400 else "error"
        self._write(handler, reply)
        self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _cut(handler: _Handler) -> None:
        """Close the connection without a response: the client sees the server disconnect."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        data = b"" if reply.body is None else json.dumps(reply.body).encode("utf-8")
        try:
            handler.send_response(reply.status)
            if reply.body is not None:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True  # the client already gave up (e.g. it timed out during a delay)


# ---------------------------------------------------------------------------------------------------------------
# PagerDuty state
# ---------------------------------------------------------------------------------------------------------------

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
"""A 32-character integration key the fake accepts when no `routing_keys` mapping is configured."""

API_KEY = "fake-pagerduty-api-key"
FROM_EMAIL = "bridge@example.com"

ACCEPT_V2 = "application/vnd.pagerduty+json;version=2"

# Every ability the fake knows; the default account has them all. Names follow PagerDuty's Abilities API
# (`GET /abilities`); `event_intelligence` stands for the "Event Intelligence package or Digital Operations plan"
# that past/related incidents need (the spec names the plan, not an ability), and `status_updates` for the
# "status updates entitlements" the spec's Templates tag mentions (the spec names no ability for
# `POST /incidents/{id}/status_updates` and lists no 402 there; a real account without them may answer 402 or 403).
ALL_ABILITIES = frozenset({"coordinated_responding", "teams", "priorities", "urgencies", "event_intelligence",
                           "status_updates"})

# Events API v2 limits (developer docs `docs/events-API-v2/01-Overview.md` "Size Limits" and
# `02-Trigger-Events.md`): the schema itself encodes none of them.
EVENTS_MAX_BYTES = 512 * 1024
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024

# REST pagination (developer docs `docs/REST-API/09-Pagination.md`).
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_OFFSET_PLUS_LIMIT = 10000

DEFAULT_USERS: tuple[dict[str, Any], ...] = (
    {"id": "PUSER01", "name": "Bridge Bot", "email": FROM_EMAIL},
    {"id": "PUSER02", "name": "Alice Oncall", "email": "alice@example.com"},
    {"id": "PUSER03", "name": "Bob Expert", "email": "bob@example.com"},
)
# `on_call_user_ids`: who a responder request targeting the policy pages (the fake's stand-in for on-call).
DEFAULT_ESCALATION_POLICIES: tuple[dict[str, Any], ...] = (
    {"id": "PEP0001", "name": "Default Escalation Policy", "on_call_user_ids": ["PUSER02"]},
    {"id": "PEP0002", "name": "Database Experts", "on_call_user_ids": ["PUSER03"]},
)
DEFAULT_SERVICES: tuple[dict[str, Any], ...] = (
    {"id": "PSVC001", "name": "Default Service", "escalation_policy_id": "PEP0001"},
)
DEFAULT_PRIORITIES: tuple[dict[str, Any], ...] = tuple(  # most to least severe, as PagerDuty orders them
    {"id": f"PPRI00{n}", "name": f"P{n}", "description": f"Priority {n}"} for n in range(1, 6)
)


@dataclass
class ReceivedEvent:
    """One Events API request that was answered 202, in arrival order.

    `outcome` is `ingested` or `dropped` (PagerDuty answers 202 to an ack/resolve for a resolved or unknown
    key, then drops it). `change` marks `/v2/change/enqueue` events.
    """

    received_at: float
    routing_key: str
    event_action: str
    dedup_key: str | None
    body: dict[str, Any]
    outcome: Literal["ingested", "dropped"] = "ingested"
    change: bool = False

    @property
    def summary(self) -> str | None:
        """`payload.summary`, if any."""
        payload = self.body.get("payload") or {}
        return payload.get("summary")


@dataclass
class Alert:
    """An alert keyed by (routing_key, dedup_key); a resolved alert stays in history but is no longer open."""

    routing_key: str
    dedup_key: str
    status: Literal["triggered", "acknowledged", "resolved"]
    incident_id: str
    events: list[ReceivedEvent] = field(default_factory=list)

    @property
    def open(self) -> bool:
        """Not resolved."""
        return self.status != "resolved"


@dataclass
class Incident:
    """A PagerDuty incident, created through REST (`POST /incidents`) or by a new alert from the Events API."""

    id: str
    number: int
    title: str
    service_id: str
    escalation_policy_id: str
    status: Literal["triggered", "acknowledged", "resolved"]
    urgency: Literal["high", "low"]
    created_at: float
    incident_key: str | None = None
    priority_id: str | None = None
    body_details: str | None = None
    escalation_level: int = 1
    assignee_ids: list[str] = field(default_factory=list)
    acknowledger_ids: list[str] = field(default_factory=list)
    conference_bridge: dict[str, Any] | None = None
    updated_at: float = 0.0
    resolved_at: float | None = None
    last_status_change_at: float = 0.0
    resolution: str | None = None
    created_via: Literal["rest", "events"] = "rest"
    alert: tuple[str, str] | None = None  # (routing_key, dedup_key) for incidents opened by an event
    notes: list[dict[str, Any]] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    responder_requests: list[dict[str, Any]] = field(default_factory=list)
    incidents_responders: list[dict[str, Any]] = field(default_factory=list)
    status_updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        """Not resolved."""
        return self.status != "resolved"


_REST_ROUTES: list[tuple[str, str, str]] = [
    # (method, spec path template, handler method name); matched in order.
    ("GET", "/abilities", "_get_abilities"),
    ("GET", "/abilities/{id}", "_get_ability"),
    ("GET", "/priorities", "_list_priorities"),
    ("GET", "/services", "_list_services"),
    ("GET", "/services/{id}", "_get_service"),
    ("GET", "/escalation_policies", "_list_escalation_policies"),
    ("GET", "/escalation_policies/{id}", "_get_escalation_policy"),
    ("GET", "/users", "_list_users"),
    ("GET", "/users/{id}", "_get_user"),
    ("GET", "/teams", "_list_teams"),
    ("GET", "/incidents", "_list_incidents"),
    ("POST", "/incidents", "_create_incident"),
    ("PUT", "/incidents", "_update_incidents"),
    ("GET", "/incidents/{id}", "_get_incident"),
    ("PUT", "/incidents/{id}", "_update_incident"),
    ("GET", "/incidents/{id}/notes", "_list_notes"),
    ("POST", "/incidents/{id}/notes", "_create_note"),
    ("POST", "/incidents/{id}/responder_requests", "_create_responder_request"),
    ("POST", "/incidents/{id}/status_updates", "_create_status_update"),
    ("GET", "/incidents/{id}/log_entries", "_list_log_entries"),
    ("GET", "/incidents/{id}/past_incidents", "_past_incidents"),
    ("GET", "/incidents/{id}/related_incidents", "_related_incidents"),
]


def _route_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


_COMPILED_ROUTES = [(method, template, _route_regex(template), name) for method, template, name in _REST_ROUTES]


def _match_route(method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    """(spec path template, handler method name, path parameters) of the route serving `method path`."""
    for route_method, template, regex, handler_name in _COMPILED_ROUTES:
        match = regex.match(path)
        if match and route_method == method:
            return template, handler_name, match.groupdict()
    return None


def _rest_error(status: int, message: str, code: int, errors: list[str] | None = None) -> Reply:
    """REST API v2 error shape (developer docs `docs/REST-API/14-Errors.md`)."""
    error: dict[str, Any] = {"message": message, "code": code}
    if errors:
        error["errors"] = errors
    return Reply(status, {"error": error})


def _missing_ability() -> Reply:
    return _rest_error(402, "Account does not have the abilities to perform the action", 2014)


def _events_invalid(errors: list[str]) -> Reply:
    """Events API 400 shape, as quoted from a real answer in go-pagerduty#476."""
    return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})


class FakePagerDuty(LoopbackServer):
    """Fake PagerDuty: Events API v2 (`/v2/enqueue`, `/v2/change/enqueue`) and REST API v2 on one server.

    Constructor arguments (all optional):
    - `services`, `escalation_policies`, `users`, `priorities`, `teams`: directory entries as dicts with at least
      `id` and `name` (users also `email`; services `escalation_policy_id`; escalation policies optionally
      `on_call_user_ids`, whom a responder request to the policy pages). Defaults: `DEFAULT_*` above.
    - `routing_keys`: integration key -> service id. When given, other keys answer 400 "Invalid routing key";
      when None every key is accepted and maps to the first service.
    - `api_keys`: accepted REST API keys (None: any non-empty key).
    - `abilities`: the account's abilities (None: `ALL_ABILITIES`); a missing one gives 402 (or 403 for
      past/related incidents, as the spec lists).
    - `events_rate_limit_per_minute` (PagerDuty: ~120 per routing key), `rest_rate_limit_per_minute`
      (PagerDuty: 960 per key): None disables them.
    - `clock`: epoch-seconds clock for timestamps and rate windows (`ManualClock` in tests).
    - `tls`: serve HTTPS with a self-signed certificate (default True: the `pagerduty` clients demand https).
    """

    def __init__(
        self,
        *,
        services: Collection[Mapping[str, Any]] | None = None,
        escalation_policies: Collection[Mapping[str, Any]] | None = None,
        users: Collection[Mapping[str, Any]] | None = None,
        priorities: Collection[Mapping[str, Any]] | None = None,
        teams: Collection[Mapping[str, Any]] | None = None,
        routing_keys: Mapping[str, str] | None = None,
        api_keys: Collection[str] | None = None,
        abilities: Collection[str] | None = None,
        events_rate_limit_per_minute: int | None = None,
        rest_rate_limit_per_minute: int | None = None,
        clock: Clock | None = None,
        tls: bool = True,
    ) -> None:
        super().__init__(tls=tls, clock=clock)
        # Loading the specs here (not at import) makes a missing ../shared skip the test that builds the fake.
        self.events_spec: OpenApiSpec = events_spec()
        self.rest_spec: OpenApiSpec = rest_spec()
        self.services = [dict(s) for s in (services if services is not None else DEFAULT_SERVICES)]
        self.escalation_policies = [
            dict(p) for p in (escalation_policies if escalation_policies is not None else DEFAULT_ESCALATION_POLICIES)
        ]
        self.users = [dict(u) for u in (users if users is not None else DEFAULT_USERS)]
        self.priorities = [dict(p) for p in (priorities if priorities is not None else DEFAULT_PRIORITIES)]
        self.teams = [dict(t) for t in (teams or ())]
        self.routing_keys = dict(routing_keys) if routing_keys is not None else None
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.abilities: set[str] = set(abilities) if abilities is not None else set(ALL_ABILITIES)
        self._events_limiter = (
            SlidingWindowLimiter(events_rate_limit_per_minute, self.clock) if events_rate_limit_per_minute else None
        )
        self._rest_limiter = (
            SlidingWindowLimiter(rest_rate_limit_per_minute, self.clock) if rest_rate_limit_per_minute else None
        )
        # State (guarded by self.lock, which every handler holds).
        self.events: list[ReceivedEvent] = []
        self.change_events: list[ReceivedEvent] = []
        self.alerts: list[Alert] = []
        self.incidents: list[Incident] = []
        self._open_alerts: dict[tuple[str, str], Alert] = {}
        self._past: dict[str, list[dict[str, Any]]] = {}
        self._related: dict[str, list[dict[str, Any]]] = {}
        self._counters: dict[str, int] = {}

    def __enter__(self) -> FakePagerDuty:
        self.start()
        return self

    # -- clients aimed at the fake --------------------------------------------------------------------------

    def events_client(self, routing_key: str = ROUTING_KEY, **kwargs: Any) -> Any:
        """A `pagerduty.EventsApiV2Client` for this fake. Its back-off sleeps are shortened to 10 ms."""
        import pagerduty

        kwargs.setdefault("verify", self.ssl_context)
        client = pagerduty.EventsApiV2Client(routing_key, base_url=self.url, **kwargs)
        client.sleep_timer = 0.01  # the library's 1.5 s x 2^n back-off would make fault tests slow
        return client

    def rest_client(self, api_key: str = API_KEY, default_from: str | None = FROM_EMAIL, **kwargs: Any) -> Any:
        """A `pagerduty.RestApiV2Client` for this fake (token auth, `From` = `default_from`)."""
        import pagerduty

        kwargs.setdefault("verify", self.ssl_context)
        client = pagerduty.RestApiV2Client(api_key, default_from=default_from, base_url=self.url, **kwargs)
        client.sleep_timer = 0.01
        return client

    # -- assertion helpers ----------------------------------------------------------------------------------

    @property
    def dropped_events(self) -> list[ReceivedEvent]:
        """Events answered 202 but dropped (ack/resolve with no open alert for that routing key + dedup key)."""
        with self.lock:
            return [e for e in self.events if e.outcome == "dropped"]

    def triggers_for(self, dedup_key: str, routing_key: str | None = None) -> list[ReceivedEvent]:
        """Accepted (202) trigger events with `dedup_key` (and `routing_key`, if given), in arrival order."""
        with self.lock:
            return [
                e
                for e in self.events
                if e.event_action == "trigger"
                and e.dedup_key == dedup_key
                and (routing_key is None or e.routing_key == routing_key)
            ]

    def open_alerts(self) -> list[Alert]:
        """Alerts currently triggered or acknowledged."""
        with self.lock:
            return [a for a in self.alerts if a.open]

    def alert(self, dedup_key: str, routing_key: str | None = None) -> Alert | None:
        """The most recent alert with `dedup_key` (open or not), or None."""
        with self.lock:
            for candidate in reversed(self.alerts):
                if candidate.dedup_key == dedup_key and routing_key in (None, candidate.routing_key):
                    return candidate
        return None

    def incident(self, incident_id: str) -> Incident:
        """The incident with `incident_id` (KeyError if unknown)."""
        with self.lock:
            for candidate in self.incidents:
                if candidate.id == incident_id:
                    return candidate
        raise KeyError(incident_id)

    def incidents_for(self, incident_key: str) -> list[Incident]:
        """All incidents (open or resolved) whose `incident_key` (= the event's dedup key) is `incident_key`."""
        with self.lock:
            return [i for i in self.incidents if i.incident_key == incident_key]

    def open_incidents(self) -> list[Incident]:
        """Incidents not resolved."""
        with self.lock:
            return [i for i in self.incidents if i.open]

    # -- scripting state ------------------------------------------------------------------------------------

    def seed_open_incidents(self, dedup_keys: Collection[str], *, routing_key: str = ROUTING_KEY,
                            summary: str = "seeded incident", severity: str = "error") -> list[Incident]:
        """Open an alert and its incident for each dedup key, as a trigger with that key would have (same state,
        same ids), without a request: nothing is added to `events` or `requests`. For tests that start from
        many incidents PagerDuty already has (a restart with a week of incidents). Returns the incidents."""
        opened = []
        with self.lock:
            now = self.clock()
            for key in dedup_keys:
                event = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": key,
                         "payload": {"summary": summary, "source": "seed", "severity": severity}}
                if (routing_key, key) in self._open_alerts:
                    raise ValueError(f"an alert with dedup key {key!r} is open already")
                self._open_alert(routing_key, key, event, ReceivedEvent(now, routing_key, "trigger", key, event), now)
                opened.append(self.incidents[-1])
        return opened

    def answer_responder_request(self, incident_id: str, user_id: str, *, accepted: bool = True) -> None:
        """Make user `user_id` accept (`joined`) or decline a pending responder request on the incident."""
        with self.lock:
            incident = self.incident(incident_id)
            found = False
            for responder in incident.incidents_responders:
                if responder["user"]["id"] == user_id and responder["state"] == "pending":
                    responder["state"] = "joined" if accepted else "declined"
                    responder["updated_at"] = iso(self.clock())
                    found = True
            if not found:
                raise KeyError(f"no pending responder request for user {user_id} on incident {incident_id}")
            user = self._find(self.users, user_id)
            verb = "accepted" if accepted else "declined"
            self._log(
                incident,
                "assign_log_entry" if accepted else "notify_log_entry",
                f"{user['name']} {verb} the request to respond",
                agent=self._ref("user", user),
                extra={"responder_request_answer": verb},
            )
            if accepted and user_id not in incident.assignee_ids:
                incident.assignee_ids.append(user_id)

    def set_past_incidents(self, incident_id: str, items: list[dict[str, Any]]) -> None:
        """Script `GET /incidents/{id}/past_incidents`: items like `{"incident": {...}, "score": 46.8}`.

        Without this, the fake answers the other incidents of the same service, newest first, score 50.0.
        """
        with self.lock:
            self._past[incident_id] = list(items)

    def set_related_incidents(self, incident_id: str, items: list[dict[str, Any]]) -> None:
        """Script `GET /incidents/{id}/related_incidents`: items like `{"incident": {...}, "relationships": [...]}`.

        Without this, the answer is an empty list.
        """
        with self.lock:
            self._related[incident_id] = list(items)

    # -- routing --------------------------------------------------------------------------------------------

    def _api_of(self, path: str) -> str:
        return "events" if path.startswith("/v2/") else "rest"

    def _fault_reply(self, request: RecordedRequest, fault: Fault) -> Reply:
        headers = dict(fault.headers)
        body = fault.body
        if body is None:
            if request.api == "events":
                # Events API: a 429 carries no documented body (spec quirk 3, api-schema#263); 5xx use the Error shape.
                if fault.status != 429:
                    body = {"status": "error", "message": "Internal error", "errors": [f"fake fault {fault.status}"]}
            elif fault.status == 429:
                body = {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
                headers.setdefault("ratelimit-limit", "960")
                headers.setdefault("ratelimit-remaining", "0")
                headers.setdefault("ratelimit-reset", "30")
            else:
                body = {"error": {"message": "Internal Server Error", "code": 0}}
        return Reply(fault.status, body, headers)

    def _handle(self, request: RecordedRequest) -> Reply:
        if request.api == "events":
            return self._handle_events(request)
        return self._handle_rest(request)

    # -- ids, references and logs ---------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"P{prefix}{self._counters[prefix]:05d}"

    def _ref(self, kind: str, entity: Mapping[str, Any]) -> dict[str, Any]:
        plural = {"escalation_policy": "escalation_policies", "priority": "priorities"}.get(kind, f"{kind}s")
        summary = entity.get("summary") or entity.get("name") or entity.get("title") or entity["id"]
        return {
            "id": entity["id"],
            "type": f"{kind}_reference",
            "summary": summary,
            "self": f"{self.url}/{plural}/{entity['id']}",
            "html_url": f"https://fake.pagerduty.local/{plural}/{entity['id']}",
        }

    def _full(self, kind: str, entity: Mapping[str, Any]) -> dict[str, Any]:
        """A directory entry as the API returns it: the configured fields plus type/summary/self/html_url."""
        full = dict(entity)
        full.update({k: v for k, v in self._ref(kind, entity).items() if k != "type"})
        full["type"] = kind
        if kind == "service":
            policy = self._find(self.escalation_policies, str(entity.get("escalation_policy_id", "")))
            full.pop("escalation_policy_id", None)
            full["escalation_policy"] = self._ref("escalation_policy", policy) if policy else None
            full.setdefault("status", "active")
        return full

    @staticmethod
    def _find(entries: list[dict[str, Any]], entity_id: str) -> dict[str, Any]:
        for entry in entries:
            if entry["id"] == entity_id:
                return entry
        return {}

    def _log(
        self,
        incident: Incident,
        kind: str,
        summary: str,
        *,
        agent: dict[str, Any] | None = None,
        channel: str = "api",
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        service = self._find(self.services, incident.service_id) or {"id": incident.service_id}
        entry: dict[str, Any] = {
            "id": self._next_id("L"),
            "type": kind,
            "summary": summary,
            "created_at": iso(self.clock()),
            "channel": {"type": channel},
            "agent": agent,
            "incident": self._incident_ref(incident),
            "service": self._ref("service", service),
        }
        entry["self"] = f"{self.url}/log_entries/{entry['id']}"
        entry.update(extra or {})
        incident.log_entries.append(entry)
        return entry

    def _incident_ref(self, incident: Incident) -> dict[str, Any]:
        return self._ref("incident", {"id": incident.id, "summary": f"[#{incident.number}] {incident.title}"})

    # ========================================================================================================
    # Events API v2
    # ========================================================================================================

    def _handle_events(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return self._reject(request, Reply(404, {"status": "not found", "message": "Not Found"}), ["no such path"])
        change = request.path == "/v2/change/enqueue"
        # "The whole request is limited to 512 KB" (docs/events-API-v2/01-Overview.md, Size Limits).
        if len(request.body) > EVENTS_MAX_BYTES:
            return self._reject(request, _events_invalid(["Event too large: over 512 KB"]), ["over 512 KB"])
        try:
            event = json.loads(request.body)
        except ValueError:
            # The documented example of an unparseable body (events-v2 spec, components.responses.Error).
            reply = Reply(
                400,
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
            )
            return self._reject(request, reply, ["JSON parse error"])
        errors = self.events_spec.validate_body("/change/enqueue" if change else "/enqueue", "post", event)
        if not errors and isinstance(event, dict):
            errors = self._event_rules(event, change)
        if errors:
            return self._reject(request, _events_invalid(errors), errors)
        routing_key = str(event["routing_key"])
        if self.routing_keys is not None and routing_key not in self.routing_keys:
            return self._reject(request, _events_invalid(["Invalid routing key"]), ["Invalid routing key"])
        # Rate limit: "approximately 120 calls/minute per integration key ... 60 second window looking back
        # from now" (docs/events-API-v2/05-Rate-Limits.md). Over it: 429 and the event is not ingested.
        if self._events_limiter is not None:
            admitted, _, _ = self._events_limiter.admit(routing_key)
            if not admitted:
                request.outcome = "rate_limited"
                return Reply(429)
        if change:
            self.change_events.append(
                ReceivedEvent(request.received_at, routing_key, "change", None, event, change=True)
            )
            return Reply(202, {"status": "success", "message": "Change event processed"})
        return self._ingest_alert_event(request, event, routing_key)

    @staticmethod
    def _event_rules(event: dict[str, Any], change: bool) -> list[str]:
        """The documented rules the events-v2 schema leaves out (docs/events-API-v2/02-Trigger-Events.md)."""
        errors: list[str] = []
        if not str(event.get("routing_key", "")).strip():
            errors.append("'routing_key' is missing or blank")
        payload = event.get("payload")
        action = event.get("event_action")
        if change or action == "trigger":
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or blank")
            else:
                required = ("summary",) if change else ("summary", "source")
                for name in required:
                    if not str(payload.get(name, "")).strip():
                        errors.append(f"'payload.{name}' is missing or blank")
                if len(str(payload.get("summary", ""))) > SUMMARY_MAX:
                    errors.append(f"'payload.summary' is longer than {SUMMARY_MAX} characters")
        dedup_key = event.get("dedup_key")
        if action in ("acknowledge", "resolve") and not (isinstance(dedup_key, str) and dedup_key):
            errors.append(f"'dedup_key' is required for {action} events")
        if isinstance(dedup_key, str) and len(dedup_key) > DEDUP_KEY_MAX:
            errors.append(f"'dedup_key' is longer than {DEDUP_KEY_MAX} characters")
        return errors

    def _ingest_alert_event(self, request: RecordedRequest, event: dict[str, Any], routing_key: str) -> Reply:
        """PagerDuty's de-duplication semantics (docs/events-API-v2/02-Trigger-Events.md)."""
        action = str(event["event_action"])
        dedup_key = event.get("dedup_key") or None
        if action == "trigger" and dedup_key is None:
            # PagerDuty generates a 32-character key; a counter keeps the fake deterministic.
            self._counters["dedup"] = self._counters.get("dedup", 0) + 1
            dedup_key = f"{self._counters['dedup']:032x}"
        assert dedup_key is not None  # ack/resolve without one were rejected by _event_rules
        received = ReceivedEvent(request.received_at, routing_key, action, dedup_key, event)
        self.events.append(received)
        open_alert = self._open_alerts.get((routing_key, dedup_key))
        now = self.clock()
        if action == "trigger":
            if open_alert is not None:
                # A trigger on an open alert de-duplicates into it: same alert, same incident.
                open_alert.events.append(received)
            else:
                self._open_alert(routing_key, dedup_key, event, received, now)
        elif open_alert is None:
            # "acknowledge and resolve with that key are dropped" once resolved; the same for unknown keys and
            # for another routing key than the trigger's. PagerDuty still answers 202.
            received.outcome = "dropped"
            request.outcome = "dropped"
        else:
            open_alert.events.append(received)
            incident = self.incident(open_alert.incident_id)
            if action == "acknowledge":
                open_alert.status = "acknowledged"
                if incident.status == "triggered":
                    self._set_status(incident, "acknowledged", agent=None, channel="events_api_v2")
            else:
                open_alert.status = "resolved"
                del self._open_alerts[(routing_key, dedup_key)]
                if incident.open:
                    self._set_status(incident, "resolved", agent=None, channel="events_api_v2")
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def _open_alert(
        self, routing_key: str, dedup_key: str, event: dict[str, Any], received: ReceivedEvent, now: float
    ) -> None:
        service_id = (self.routing_keys or {}).get(routing_key) or self.services[0]["id"]
        service = self._find(self.services, service_id)
        payload = event.get("payload") or {}
        incident = Incident(
            id=self._next_id("I"),
            number=len(self.incidents) + 1,
            title=str(payload.get("summary", "")),
            service_id=service_id,
            escalation_policy_id=str(service.get("escalation_policy_id", "")),
            status="triggered",
            # PagerDuty's severity-based urgency: critical/error are high, warning/info low.
            urgency="high" if payload.get("severity") in ("critical", "error") else "low",
            created_at=now,
            updated_at=now,
            last_status_change_at=now,
            incident_key=dedup_key,
            created_via="events",
            alert=(routing_key, dedup_key),
        )
        self.incidents.append(incident)
        self._log(incident, "trigger_log_entry", "Triggered through the API", channel="events_api_v2")
        alert = Alert(routing_key, dedup_key, "triggered", incident.id, [received])
        self.alerts.append(alert)
        self._open_alerts[(routing_key, dedup_key)] = alert

    def _set_status(
        self,
        incident: Incident,
        status: str,
        *,
        agent: dict[str, Any] | None,
        channel: str = "api",
        resolution: str | None = None,
    ) -> None:
        """Change an incident's status, with its log entry; resolving also resolves its alert."""
        if status == incident.status:
            return
        now = self.clock()
        incident.status = status  # type: ignore[assignment]  # validated against the spec enum before
        incident.updated_at = incident.last_status_change_at = now
        if status == "acknowledged":
            incident.resolved_at = None
            if agent is not None and agent["id"] not in incident.acknowledger_ids:
                incident.acknowledger_ids.append(agent["id"])
            self._log(incident, "acknowledge_log_entry", "Acknowledged", agent=agent, channel=channel)
        elif status == "resolved":
            incident.resolved_at = now
            incident.resolution = resolution
            self._log(
                incident,
                "resolve_log_entry",
                "Resolved",
                agent=agent,
                channel=channel,
                extra={"note": resolution} if resolution else None,
            )
            if incident.alert is not None:
                alert = self._open_alerts.pop(incident.alert, None)
                if alert is not None:
                    alert.status = "resolved"
        else:  # re-triggered (reopened)
            incident.resolved_at = None
            incident.acknowledger_ids.clear()
            self._log(incident, "trigger_log_entry", "Reopened", agent=agent, channel=channel)

    # ========================================================================================================
    # REST API v2
    # ========================================================================================================

    def _handle_rest(self, request: RecordedRequest) -> Reply:
        auth = self._check_auth(request)
        if auth is not None:
            return auth
        route = _match_route(request.method, request.path)
        if route is None:
            # An endpoint the fake does not implement is loud: recorded as invalid, so a test notices.
            return self._reject(
                request,
                _rest_error(404, "Not Found", 2100, [f"the fake has no {request.method} {request.path}"]),
                [f"unknown endpoint {request.method} {request.path}"],
            )
        template, handler_name, path_params = route
        problems = self._check_headers(request, template)
        problems += self.rest_spec.validate_query(template, request.method, request.query)
        body: Any = None
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                body = json.loads(request.body or b"null")
            except ValueError:
                problems.append("request body is not JSON")
            else:
                problems += self.rest_spec.validate_body(template, request.method, body)
        if problems:
            return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
        if self._rest_limiter is not None:
            key = self._api_key(request) or ""
            admitted, remaining, reset = self._rest_limiter.admit(key)
            headers = {
                "ratelimit-limit": str(self._rest_limiter.limit),
                "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(reset),
            }
            if not admitted:
                request.outcome = "rate_limited"
                reply = _rest_error(429, "Rate Limit Exceeded", 2020)
                reply.headers.update(headers)
                return reply
        handler: Callable[[RecordedRequest, dict[str, str], Any], Reply] = getattr(self, handler_name)
        reply = handler(request, path_params, body)
        if self._rest_limiter is not None:
            reply.headers.update(headers)
        if not request.outcome:
            request.outcome = {401: "unauthorized", 402: "missing_ability", 403: "forbidden", 404: "not_found"}.get(
                reply.status, "accepted" if reply.status < 400 else "error"
            )
        return reply

    @staticmethod
    def _api_key(request: RecordedRequest) -> str | None:
        header = request.header("Authorization") or ""
        for prefix in ("Token token=", "Bearer "):
            if header.startswith(prefix) and header[len(prefix) :].strip():
                return header[len(prefix) :].strip()
        return None

    def _check_auth(self, request: RecordedRequest) -> Reply | None:
        """`Authorization: Token token=<key>` or `Bearer <token>` (docs/REST-API/02-Authentication.md)."""
        key = self._api_key(request)
        if key is None:
            # No or malformed credentials is a client bug: recorded as invalid. A well-formed but unknown key
            # (a configuration error a test may provoke on purpose) is only a 401.
            return self._reject(
                request,
                _rest_error(401, "Authentication required", 2006),
                ["missing or malformed Authorization header"],
            )
        if self.api_keys is not None and key not in self.api_keys:
            request.outcome = "unauthorized"
            return _rest_error(401, "Authentication required", 2006)
        return None

    def _check_headers(self, request: RecordedRequest, template: str) -> list[str]:
        problems: list[str] = []
        accept = (request.header("Accept") or "").replace(" ", "")
        if ACCEPT_V2 not in accept:
            problems.append(f"Accept header must be {ACCEPT_V2!r}, got {request.header('Accept')!r}")
        # The spec marks Content-Type required even on GETs (quirk 4) and the pagerduty client sends none
        # there, so it is only checked where there is a body.
        if request.method in ("POST", "PUT", "PATCH"):
            content_type = (request.header("Content-Type") or "").split(";")[0].strip()
            if content_type != "application/json":
                problems.append(f"Content-Type must be application/json, got {request.header('Content-Type')!r}")
        if self.rest_spec.requires_header(template, request.method, "From"):
            sender = request.header("From")
            if not sender:
                problems.append("the From header (email of a valid user) is required on this operation")
            elif not self._user_by_email(sender):
                problems.append(f"From {sender!r} is not the email of a user of this account")
        return problems

    def _user_by_email(self, email: str) -> dict[str, Any]:
        for user in self.users:
            if str(user.get("email", "")).lower() == email.lower():
                return user
        return {}

    def _sender(self, request: RecordedRequest) -> dict[str, Any] | None:
        user = self._user_by_email(request.header("From") or "")
        return self._ref("user", user) if user else None

    # -- pagination ----------------------------------------------------------------------------------------

    def _page(self, request: RecordedRequest, key: str, items: list[Any]) -> Reply:
        """Classic offset pagination (docs/REST-API/09-Pagination.md): limit <= 100, offset + limit <= 10000."""
        limit = min(int(request.query.get("limit", [DEFAULT_LIMIT])[0]), MAX_LIMIT)
        offset = int(request.query.get("offset", [0])[0])
        if limit < 1 or offset < 0:
            problems = ["limit must be >= 1 and offset >= 0"]
            return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
        if offset + limit > MAX_OFFSET_PLUS_LIMIT:
            problems = [f"offset + limit must be <= {MAX_OFFSET_PLUS_LIMIT} (use since/until windows instead)"]
            return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
        total = request.query.get("total", ["false"])[0].lower() == "true"
        page = items[offset : offset + limit]
        return Reply(
            200,
            {
                key: page,
                "limit": limit,
                "offset": offset,
                "more": offset + len(page) < len(items),
                "total": len(items) if total else None,
            },
        )

    @staticmethod
    def _query_filter(entries: list[dict[str, Any]], request: RecordedRequest, *fields: str) -> list[dict[str, Any]]:
        query = request.query.get("query", [""])[0].lower()
        return [e for e in entries if not query or any(query in str(e.get(f, "")).lower() for f in fields)]

    # -- directory endpoints -------------------------------------------------------------------------------

    def _get_abilities(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        return Reply(200, {"abilities": sorted(self.abilities)})

    def _get_ability(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        # `GET /abilities/{id}`: 204 when present, 402 when not (what RestApiV2Client.account_has_ability reads).
        return Reply(204) if params["id"] in self.abilities else _missing_ability()

    def _list_priorities(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        if "priorities" not in self.abilities:
            return _missing_ability()
        return self._page(request, "priorities", [self._full("priority", p) for p in self.priorities])

    def _list_services(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        entries = self._query_filter(self.services, request, "name")
        return self._page(request, "services", [self._full("service", s) for s in entries])

    def _get_service(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        service = self._find(self.services, params["id"])
        return (
            Reply(200, {"service": self._full("service", service)}) if service else _rest_error(404, "Not Found", 2100)
        )

    def _list_escalation_policies(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        entries = self._query_filter(self.escalation_policies, request, "name")
        return self._page(request, "escalation_policies", [self._full("escalation_policy", p) for p in entries])

    def _get_escalation_policy(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        policy = self._find(self.escalation_policies, params["id"])
        return (
            Reply(200, {"escalation_policy": self._full("escalation_policy", policy)})
            if policy
            else _rest_error(404, "Not Found", 2100)
        )

    def _list_users(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        entries = self._query_filter(self.users, request, "name", "email")
        return self._page(request, "users", [self._full("user", u) for u in entries])

    def _get_user(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        user = self._find(self.users, params["id"])
        return Reply(200, {"user": self._full("user", user)}) if user else _rest_error(404, "Not Found", 2100)

    def _list_teams(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        if "teams" not in self.abilities:
            return _missing_ability()
        entries = self._query_filter(self.teams, request, "name")
        return self._page(request, "teams", [self._full("team", t) for t in entries])

    # -- incidents -----------------------------------------------------------------------------------------

    def _incident_json(self, incident: Incident, include: Collection[str] = (), body: bool = False) -> dict[str, Any]:
        service = self._find(self.services, incident.service_id) or {"id": incident.service_id}
        policy = self._find(self.escalation_policies, incident.escalation_policy_id) or {
            "id": incident.escalation_policy_id
        }
        priority = self._find(self.priorities, incident.priority_id) if incident.priority_id else {}
        expand = set(include)
        user_kind = "user" if {"users", "assignees"} & expand else None

        def user(user_id: str) -> dict[str, Any]:
            entry = self._find(self.users, user_id) or {"id": user_id}
            return self._full("user", entry) if user_kind else self._ref("user", entry)

        data: dict[str, Any] = {
            **self._incident_ref(incident),
            "type": "incident",
            "incident_number": incident.number,
            "title": incident.title,
            "description": incident.title,
            "status": incident.status,
            "urgency": incident.urgency,
            "incident_key": incident.incident_key,
            "created_at": iso(incident.created_at),
            "updated_at": iso(incident.updated_at),
            "last_status_change_at": iso(incident.last_status_change_at),
            "resolved_at": iso(incident.resolved_at) if incident.resolved_at else None,
            "service": self._full("service", service) if "services" in expand else self._ref("service", service),
            "escalation_policy": (
                self._full("escalation_policy", policy)
                if "escalation_policies" in expand
                else self._ref("escalation_policy", policy)
            ),
            "priority": (
                (self._full("priority", priority) if "priorities" in expand else self._ref("priority", priority))
                if priority
                else None
            ),
            "assignments": [{"at": iso(incident.updated_at), "assignee": user(u)} for u in incident.assignee_ids],
            "acknowledgements": [
                {"at": iso(incident.last_status_change_at), "acknowledger": user(u)} for u in incident.acknowledger_ids
            ],
            "escalation_level": incident.escalation_level,
            "alert_counts": {
                "triggered": int(incident.alert is not None and incident.open),
                "resolved": int(incident.alert is not None and not incident.open),
                "all": int(incident.alert is not None),
            },
            "pending_actions": [],
            "teams": [],
            "conference_bridge": incident.conference_bridge,
            "incidents_responders": [dict(r) for r in incident.incidents_responders],
            "responder_requests": [dict(r) for r in incident.responder_requests],
        }
        if "first_trigger_log_entries" in expand:
            data["first_trigger_log_entry"] = next(
                (e for e in incident.log_entries if e["type"] == "trigger_log_entry"), None
            )
        if body:
            data["body"] = {"type": "incident_body", "details": incident.body_details}
        return data

    def _get_incident_or_404(self, incident_id: str) -> Incident | Reply:
        try:
            return self.incident(incident_id)
        except KeyError:
            return _rest_error(404, "Not Found", 2100, [f"Incident {incident_id} not found"])

    def _list_incidents(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        q = request.query
        if "team_ids[]" in q and "teams" not in self.abilities:
            return _missing_ability()
        selected = list(self.incidents)
        if "statuses[]" in q:
            selected = [i for i in selected if i.status in q["statuses[]"]]
        if "service_ids[]" in q:
            selected = [i for i in selected if i.service_id in q["service_ids[]"]]
        if "urgencies[]" in q:
            selected = [i for i in selected if i.urgency in q["urgencies[]"]]
        if "user_ids[]" in q:  # "returns only triggered/acknowledged incidents" (spec)
            selected = [i for i in selected if i.open and set(i.assignee_ids) & set(q["user_ids[]"])]
        if "incident_key" in q:
            selected = [i for i in selected if i.incident_key == q["incident_key"][0]]
        if q.get("date_range", [""])[0] != "all":
            # "Maximum range is 6 months and default is 1 month" (spec, since/until).
            try:
                until = parse_iso(q["until"][0]) if "until" in q else self.clock() + 1
                since = parse_iso(q["since"][0]) if "since" in q else until - 30 * 86400
            except ValueError as error:
                problems = [f"since/until: {error}"]
                return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
            if until - since > 183 * 86400:
                problems = ["since/until: the maximum range is 6 months"]
                return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
            selected = [i for i in selected if since <= i.created_at < until]
        sort = q.get("sort_by", ["created_at:asc"])[0]
        selected.sort(key=lambda i: (i.created_at, i.number), reverse=sort.endswith(":desc"))
        include = q.get("include[]", [])
        return self._page(request, "incidents", [self._incident_json(i, include) for i in selected])

    def _get_incident(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        return Reply(200, {"incident": self._incident_json(found, request.query.get("include[]", []), body=True)})

    def _create_incident(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        data = body["incident"]
        service = self._find(self.services, data["service"]["id"])
        if not service:
            return _rest_error(404, "Service Not Found", 5002)
        key = data.get("incident_key")
        if key and any(i.open and i.service_id == service["id"] and i.incident_key == key for i in self.incidents):
            # "Sending subsequent requests referencing the same service and with the same incident_key will
            # result in those requests being rejected if an open incident matches" (spec, POST /incidents).
            request.outcome = "conflict"
            return _rest_error(
                400,
                "Invalid Input Provided",
                2001,
                ["Open incident with matching dedup key already exists on this service"],
            )
        if data.get("assignments") and data.get("escalation_policy"):
            return self._reject(
                request,
                _rest_error(400, "Invalid Input Provided", 2001, ["assignments and escalation_policy are exclusive"]),
                ["assignments and escalation_policy are exclusive"],
            )
        priority_id = None
        if data.get("priority"):
            if "priorities" not in self.abilities:
                return _missing_ability()
            priority_id = data["priority"]["id"]
            if not self._find(self.priorities, priority_id):
                return self._reject(
                    request, _rest_error(400, "Invalid Priority", 1020), [f"unknown priority {priority_id}"]
                )
        policy_id = (data.get("escalation_policy") or {}).get("id") or str(service.get("escalation_policy_id", ""))
        if not self._find(self.escalation_policies, policy_id):
            return _rest_error(404, "Escalation Policy Not Found", 2100)
        now = self.clock()
        incident = Incident(
            id=self._next_id("I"),
            number=len(self.incidents) + 1,
            title=data["title"],
            service_id=service["id"],
            escalation_policy_id=policy_id,
            status="triggered",
            urgency=data.get("urgency", "high"),
            created_at=now,
            updated_at=now,
            last_status_change_at=now,
            incident_key=key,
            priority_id=priority_id,
            body_details=(data.get("body") or {}).get("details"),
            assignee_ids=[a["assignee"]["id"] for a in data.get("assignments", [])],
            conference_bridge=data.get("conference_bridge"),
        )
        self.incidents.append(incident)
        self._log(incident, "trigger_log_entry", "Triggered through the website or API", agent=self._sender(request))
        return Reply(201, {"incident": self._incident_json(incident, body=True)})

    def _apply_update(self, incident: Incident, data: dict[str, Any], agent: dict[str, Any] | None) -> str | None:
        """Apply one `PUT /incidents[/{id}]` update; returns an error message for an unknown priority."""
        now = self.clock()
        if "priority" in data:
            wanted = data["priority"]
            if wanted is not None and "priorities" not in self.abilities:
                return "ability"
            if isinstance(wanted, str):  # "a string matching a priority name" (spec)
                match = next((p for p in self.priorities if p["name"] == wanted), None)
            elif wanted is None:
                match = None
            else:
                match = self._find(self.priorities, wanted["id"]) or None
                if match is None:
                    return f"unknown priority {wanted['id']}"
            if wanted is not None and match is None:
                return f"unknown priority {wanted!r}"
            incident.priority_id = match["id"] if match else None
        if "title" in data:
            incident.title = data["title"]
        if "urgency" in data and data["urgency"] != incident.urgency:
            incident.urgency = data["urgency"]
            self._log(incident, "urgency_change_log_entry", f"Urgency changed to {data['urgency']}", agent=agent)
        if "escalation_policy" in data:
            incident.escalation_policy_id = data["escalation_policy"]["id"]
        if "escalation_level" in data:
            incident.escalation_level = int(data["escalation_level"])
            self._log(incident, "escalate_log_entry", f"Escalated to level {incident.escalation_level}", agent=agent)
        if "assignments" in data:
            incident.assignee_ids = [a["assignee"]["id"] for a in data["assignments"]]
            self._log(incident, "assign_log_entry", "Reassigned", agent=agent)
        if "conference_bridge" in data:
            incident.conference_bridge = data["conference_bridge"]
        if "status" in data:
            self._set_status(incident, data["status"], agent=agent, resolution=data.get("resolution"))
        incident.updated_at = now
        return None

    def _update_incident(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        problem = self._apply_update(found, body.get("incident", {}), self._sender(request))
        if problem == "ability":
            return _missing_ability()
        if problem:
            return self._reject(request, _rest_error(400, "Invalid Priority", 1020, [problem]), [problem])
        return Reply(200, {"incident": self._incident_json(found)})

    def _update_incidents(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        updated = []
        for data in body["incidents"]:
            found = self._get_incident_or_404(data["id"])
            if isinstance(found, Reply):
                return found
            problem = self._apply_update(found, data, self._sender(request))
            if problem == "ability":
                return _missing_ability()
            if problem:
                return self._reject(request, _rest_error(400, "Invalid Priority", 1020, [problem]), [problem])
            updated.append(self._incident_json(found))
        return self._page(request, "incidents", updated)

    # -- notes, responders, log entries --------------------------------------------------------------------

    def _list_notes(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        return Reply(200, {"notes": list(found.notes)})

    def _create_note(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        if len(found.notes) >= 2000:  # "a maximum of 2000 notes" per incident (spec)
            return _rest_error(400, "Invalid Input Provided", 2001, ["an incident has at most 2000 notes"])
        now = iso(self.clock())
        note = {
            "id": self._next_id("N"),
            "user": self._sender(request),
            "channel": {"summary": "The PagerDuty REST API", "type": "api"},
            "content": body["note"]["content"],
            "created_at": now,
            "updated_at": now,
        }
        found.notes.append(note)
        self._log(found, "annotate_log_entry", "Note added", agent=note["user"], extra={"note": note["content"]})
        return Reply(200, {"note": note})

    def _create_responder_request(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        if "coordinated_responding" not in self.abilities:
            return _missing_ability()
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        requester = self._find(self.users, body["requester_id"])
        if not requester:
            problems = [f"requester_id {body['requester_id']!r} is not a user of this account"]
            return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
        now = iso(self.clock())
        targets: list[dict[str, Any]] = []
        new_responders: list[dict[str, Any]] = []
        for wrapped in body["responder_request_targets"]:
            target = wrapped["responder_request_target"]
            if target["type"] == "user_reference":
                user = self._find(self.users, target["id"])
                if not user:
                    problems = [f"user {target['id']!r} not found"]
                    return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
                users = [user]
                kind = "user"
            else:
                policy = self._find(self.escalation_policies, target["id"])
                if not policy:
                    problems = [f"escalation policy {target['id']!r} not found"]
                    return self._reject(request, _rest_error(400, "Invalid Input Provided", 2001, problems), problems)
                # The fake pages the policy's first configured user (`on_call_user_ids`), else nobody.
                users = [self._find(self.users, u) for u in policy.get("on_call_user_ids", [])][:1]
                kind = "escalation_policy"
            responders = [
                {
                    "state": "pending",
                    "user": self._ref("user", u),
                    "incident": self._incident_ref(found),
                    "updated_at": now,
                    "message": body["message"],
                    "requester": self._ref("user", requester),
                    "requested_at": now,
                }
                for u in users
                if u
            ]
            new_responders += responders
            # The shape of the spec's response example (note its `incidents_responders` spelling).
            targets.append(
                {
                    "responder_request_target": {
                        "type": kind,
                        "id": target["id"],
                        "incidents_responders": responders,
                    }
                }
            )
        responder_request = {
            "incident": self._incident_ref(found),
            "requester": self._ref("user", requester),
            "requested_at": now,
            "message": body["message"],
            "responder_request_targets": targets,
        }
        found.responder_requests.append(responder_request)
        found.incidents_responders.extend(new_responders)
        self._log(
            found,
            "notify_log_entry",
            f"{requester['name']} requested responders",
            agent=self._ref("user", requester),
            extra={"responder_request": responder_request},
        )
        return Reply(200, {"responder_request": responder_request})

    def _create_status_update(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        """`POST /incidents/{id}/status_updates` (SCHEMA `createIncidentStatusUpdate`): body and From header were
        validated against the spec; the answer is the spec's `{"status_update": StatusUpdate}`. No log entry:
        the spec's log entry types include none for status updates."""
        if "status_updates" not in self.abilities:
            return _missing_ability()
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        update = {
            "id": self._next_id("S"),
            "message": body["message"],
            "sender": self._sender(request),
            "created_at": iso(self.clock()),
        }
        for optional in ("subject", "html_message"):
            if optional in body:
                update[optional] = body[optional]
        found.status_updates.append(update)
        return Reply(200, {"status_update": update})

    def _list_log_entries(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        # Newest first would be PagerDuty's default for the account-wide list; per incident it is oldest first.
        return self._page(request, "log_entries", list(found.log_entries))

    # -- past / related (Event Intelligence or Digital Operations plan) -------------------------------------

    def _past_incidents(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        if "event_intelligence" not in self.abilities:
            return _rest_error(403, "Account does not have the abilities to perform the action", 2014)
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        limit = int(request.query.get("limit", ["5"])[0])  # default 5, range 1-999 (spec; validated above)
        if found.id in self._past:
            items = self._past[found.id]
        else:
            others = [i for i in self.incidents if i.service_id == found.service_id and i.id != found.id]
            items = [
                {
                    "incident": {
                        "id": i.id,
                        "created_at": iso(i.created_at),
                        "self": f"{self.url}/incidents/{i.id}",
                        "title": i.title,
                    },
                    "score": 50.0,
                }
                for i in sorted(others, key=lambda i: i.created_at, reverse=True)
            ]
        total = request.query.get("total", ["false"])[0].lower() == "true"
        answer: dict[str, Any] = {"past_incidents": items[:limit], "limit": limit}
        answer["total"] = len(items) if total else None
        return Reply(200, answer)

    def _related_incidents(self, request: RecordedRequest, params: dict[str, str], body: Any) -> Reply:
        if "event_intelligence" not in self.abilities:
            return _rest_error(403, "Account does not have the abilities to perform the action", 2014)
        found = self._get_incident_or_404(params["id"])
        if isinstance(found, Reply):
            return found
        return Reply(200, {"related_incidents": list(self._related.get(found.id, []))[:20]})  # "the 20 most recent"


@pytest.fixture
def fake_pagerduty() -> Iterator[FakePagerDuty]:
    """A started `FakePagerDuty` with default settings (import this name into a conftest or test module)."""
    with FakePagerDuty() as fake:
        yield fake
