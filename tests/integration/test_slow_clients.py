"""End to end, through the real `incident-bridge serve` with its default flags: slow clients cannot tie up the
server (issue 13).

gunicorn's threaded worker gave a connection to a thread at its first byte, and the thread then waited for the
rest of the request with no deadline: 8 connections that sent half a request held every thread and /healthz
timed out. The bridge's worker (`bridge.web.gunicorn_worker.JsonErrorThreadWorker`) reads requests in its event
loop and hands only whole ones to a thread; these tests hold it to that:

- 200 connections with half a head and 50 with half a body: /healthz answers each probe within 1 s and alerts
  are accepted meanwhile (the slow connections are still open, not refused);
- a connection that has not sent a whole request within BRIDGE_REQUEST_READ_TIMEOUT gets a JSON 408 and is
  closed, with a warning that holds none of its bytes;
- /healthz answers within 1 s while every thread waits for the database (the event loop answers it);
- clients that never close their side after a `Connection: close` answer do not stall the server;
- requests that arrive in pieces (a chunked body, `Expect: 100-continue`, pipelined requests) are served whole;
- /healthz answered by the event loop is the app's answer, logged like it, and the guard still judges it;
- the event loop's own limits (a 64 KiB head, a chunked body over the body limit) answer JSON;
- a wrong BRIDGE_REQUEST_READ_TIMEOUT stops `serve` with one line naming it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.support.e2e import datadog_payload
from tests.support.server import REPO, TOKEN, BridgeProcess, bridge_env, free_port, wait_for

pytestmark = pytest.mark.integration

PROBE_BOUND = 1.0  # issue 13: /healthz answers within 1 s whatever slow clients do
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """The bridge with `serve`'s default workers and threads (dry run: nothing to page), for the module."""
    tmp = tmp_path_factory.mktemp("slow")
    proc = BridgeProcess(tmp, bridge_env(tmp)).start()
    yield proc
    proc.kill()
    assert "Traceback" not in proc.output(), proc.output()


@pytest.fixture
def quick_timeout_bridge(tmp_path: Path) -> Iterator[BridgeProcess]:
    """A bridge whose clients have 1 s to send a whole request."""
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, BRIDGE_REQUEST_READ_TIMEOUT="1")).start()
    yield proc
    proc.kill()


def alert_body(event_id: str) -> bytes:
    return json.dumps(datadog_payload(event_id, monitor=f"77{event_id[-4:]}")).encode()


def alert_request(body: bytes, *, extra: bytes = b"") -> bytes:
    """A Datadog webhook's head (with the webhook token) for `body`; `extra` header lines before the length."""
    return (b"POST /webhooks/datadog HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body))


def connect(bridge: BridgeProcess, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


class Answers:
    """The HTTP answers on one connection, in order (pipelined answers may arrive in one read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"closed before a whole answer: {self.buffer!r}"
        self.buffer += chunk

    def next(self, timeout: float = 10.0, *, to_head: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), Content-Length body (none to a HEAD)."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines)}
        length = 0 if to_head else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """The one answer a connection gets."""
    return Answers(sock).next(timeout)


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server closes the connection (EOF or reset) within `timeout`, sending nothing more."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(sock: socket.socket) -> bool:
    """Nothing answered and not closed: the server is still waiting for this client."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


def probe_healthz(bridge: BridgeProcess) -> float:
    """Seconds for GET /healthz on a new connection; fails past the bound."""
    started = time.monotonic()
    response = httpx2.get(f"{bridge.url}/healthz", timeout=PROBE_BOUND)
    took = time.monotonic() - started
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert took < PROBE_BOUND, took
    return took


def test_slow_clients_do_not_keep_healthz_or_alerts_waiting(bridge: BridgeProcess) -> None:
    with ExitStack() as stack:
        slow = [stack.enter_context(connect(bridge, PARTIAL_HEAD)) for _ in range(200)]
        for i in range(50):
            body = alert_body(f"half-{i:04d}")
            slow.append(stack.enter_context(connect(bridge, alert_request(body) + body[:len(body) // 2])))
        time.sleep(0.5)  # every slow connection accepted and read by now

        for i in range(5):
            probe_healthz(bridge)
            response = bridge.post("/webhooks/datadog", alert_body(f"fast-{i:04d}"))
            assert response.status_code == 202, response.text
            assert response.elapsed.total_seconds() < 5.0
        # The slow clients were held, not turned away: their requests may still come whole.
        assert all(still_open(sock) for sock in slow)


def test_a_client_that_does_not_send_a_whole_request_in_time_gets_a_json_408(
        quick_timeout_bridge: BridgeProcess) -> None:
    bridge = quick_timeout_bridge
    body = alert_body("late-0001")
    with (connect(bridge, PARTIAL_HEAD + b"X-Marker: never-logged-head\r\n") as head_only,
          connect(bridge, alert_request(body, extra=b"X-Marker: never-logged-body\r\n") + body[:40]) as half_body,
          connect(bridge) as silent):
        started = time.monotonic()
        for sock in (head_only, half_body):
            status, headers, answer = read_answer(sock)
            assert status == 408
            assert headers["content-type"] == "application/json" and headers["connection"] == "close"
            assert json.loads(answer)["error"] == "request_timeout" and json.loads(answer)["message"]
            assert closed_by_server(sock)
        # 1 s, checked once a second by the event loop; the bound leaves room for a loaded machine.
        assert 0.9 <= time.monotonic() - started < 4.0
        # A connection that sent nothing has no request to answer: it is closed.
        assert closed_by_server(silent)

    warnings = wait_for(lambda: [line for line in bridge.output().splitlines() if "Request timeout" in line])
    assert len(warnings) == 2 and all("WARNING" in line for line in warnings), warnings
    assert "never-logged" not in bridge.output() and "users cannot pay" not in bridge.output()
    probe_healthz(bridge)


@contextmanager
def writes_held(tmp: Path) -> Iterator[None]:
    """Hold the bridge's SQLite writer lock (bridge.store.writer): every receipt waits for it in its thread."""
    fd = os.open(tmp / "bridge.db-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def test_healthz_answers_while_every_thread_waits_for_the_database(bridge: BridgeProcess) -> None:
    with ThreadPoolExecutor(24) as pool:
        with writes_held(bridge.tmp):
            # Three times the threads of `serve`'s default 2 workers x 4 threads: all of them wait.
            posts = [pool.submit(bridge.post, "/webhooks/datadog", alert_body(f"held-{i:04d}")) for i in range(24)]
            time.sleep(1.0)
            assert not any(post.done() for post in posts)
            for _ in range(5):
                probe_healthz(bridge)
            assert not any(post.done() for post in posts)  # the threads were still waiting meanwhile
        assert [post.result().status_code for post in posts] == [202] * 24


def test_clients_that_never_close_after_the_answer_do_not_stall_the_server(bridge: BridgeProcess) -> None:
    # An HTTP/1.0 request is answered with "Connection: close"; gunicorn then waited up to 2 s per connection,
    # on its event loop, for the client to close too. These clients read their answer and keep the socket open.
    with ExitStack() as stack:
        lingering = [stack.enter_context(connect(bridge, b"GET /readyz HTTP/1.0\r\n\r\n")) for _ in range(20)]
        for sock in lingering:
            assert read_answer(sock)[0] == 200
        for _ in range(5):
            probe_healthz(bridge)


def test_requests_arriving_in_pieces_are_served_whole(bridge: BridgeProcess) -> None:
    # A chunked body sent a piece at a time, with trailers.
    body = alert_body("piece-0001")
    with connect(bridge) as sock:
        head = alert_request(body).replace(b"Content-Length: %d\r\n" % len(body), b"Transfer-Encoding: chunked\r\n")
        pieces = [head[:30], head[30:], b"%x\r\n" % 100, body[:100], b"\r\n%x\r\n" % (len(body) - 100) + body[100:],
                  b"\r\n0\r\nX-Trailer: t\r\n", b"\r\n"]
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)
        status, _, answer = read_answer(sock)
        assert status == 202, answer

    # Expect: 100-continue: the client hears 100 before it sends the body, then gets its answer.
    body = alert_body("piece-0002")
    with connect(bridge, alert_request(body, extra=b"Expect: 100-continue\r\n")) as sock:
        sock.settimeout(5)
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answers = Answers(sock)
        status, _, answer = answers.next()
        while status == 100:  # gunicorn may send its own 100 too (RFC 9110 section 15.2 allows several)
            status, _, answer = answers.next()
        assert status == 202, answer

    # Pipelined: /healthz (answered by the event loop), an alert (by a thread), /healthz again, in one write.
    body = alert_body("piece-0003")
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(bridge, healthz + alert_request(body) + body + healthz) as sock:
        answers = Answers(sock)
        assert [answers.next()[0] for _ in range(3)] == [200, 202, 200]
    # Many health checks in one write: a few at a time in the event loop, then one in a thread, and so on.
    with connect(bridge, healthz * 40) as sock:
        answers = Answers(sock)
        assert [answers.next()[::2] for _ in range(40)] == [(200, b'{"status":"ok"}\n')] * 40


def test_healthz_in_the_event_loop_answers_as_the_app_and_is_logged(bridge: BridgeProcess) -> None:
    def logged() -> int:
        return bridge.output().count('"HEAD /healthz HTTP/1.1" 200 0 ')

    before = logged()
    with connect(bridge, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        answers = Answers(sock)
        status, headers, _ = answers.next(to_head=True)
        assert (status, headers["content-length"]) == (200, "16")
        assert headers["connection"] == "keep-alive" and headers["content-type"] == "application/json"
        # Kept alive: the next request on the connection is read and answered too.
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = answers.next(to_head=True)
        assert status == 200 and headers["connection"] == "close"
        assert closed_by_server(sock)  # and nothing was sent after the heads: no body to a HEAD
    # gunicorn's access line, as for the app's answers.
    wait_for(lambda: logged() == before + 2)

    # Still the app's guard: a page of another site gets its 403, and /healthz with a query is the app's.
    cross_site = httpx2.get(f"{bridge.url}/healthz", headers={"Sec-Fetch-Site": "cross-site"}, timeout=5)
    assert cross_site.status_code == 403 and cross_site.json()["error"] == "cross_site_request"
    assert httpx2.get(f"{bridge.url}/healthz?verbose=1", timeout=5).json() == {"status": "ok"}


def test_the_event_loops_own_limits_answer_json(bridge: BridgeProcess) -> None:
    # A head over 64 KiB (each header within gunicorn's 8190 bytes): 431, without waiting for its end.
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 8000) for i in range(9))
    with connect(bridge, head) as sock:
        status, headers, body = read_answer(sock)
        assert (status, headers["content-type"]) == (431, "application/json")
        assert json.loads(body)["error"] == "request_header_fields_too_large"
        assert closed_by_server(sock)
    # A chunked body over BRIDGE_MAX_BODY_BYTES (1 MiB): 413 as soon as a chunk size says so.
    chunk = b"x" * 65536
    request = (b"POST /webhooks/datadog HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + chunk + b"\r\n") * 16 + b"1\r\nx\r\n")
    with connect(bridge, request) as sock:
        status, headers, body = read_answer(sock)
        assert (status, headers["content-type"]) == (413, "application/json")
        answer = json.loads(body)
        assert answer["error"] == "payload_too_large" and "BRIDGE_MAX_BODY_BYTES" in answer["message"]
        assert closed_by_server(sock)
    probe_healthz(bridge)


def test_a_wrong_read_timeout_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = bridge_env(tmp_path, BRIDGE_REQUEST_READ_TIMEOUT="ten")
    result = subprocess.run([sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port",
                             str(free_port())], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("incident-bridge: BRIDGE_REQUEST_READ_TIMEOUT='ten'") and "(fix: " in line, line
    assert not (tmp_path / "bridge.db").exists()  # refused before anything started
