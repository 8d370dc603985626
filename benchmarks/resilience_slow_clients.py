"""Slow clients against a real bridge: does /healthz stay fast, are alerts still accepted? (issue 13)

Usage (from the repository root):
    python benchmarks/resilience_slow_clients.py                   # 200 slow headers + 50 half bodies
    python benchmarks/resilience_slow_clients.py --slow 8 --half-bodies 0 --probe-timeout 3
    python benchmarks/resilience_slow_clients.py --slow 0 --half-bodies 0 --lingering 20

Starts `python -m bridge serve` with its default flags (bench.servers.bridge: gunicorn gthread, one worker per
CPU, 2 to 4, x 4 threads, against the fake PagerDuty in a process of its own), then opens `--slow` connections
that send `GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more, and `--half-bodies` connections that send
a Datadog webhook's headers and half its body, and keeps them open; `--lingering` connections send a whole
`GET /readyz HTTP/1.0` and never close their side after the answer (gunicorn's graceful close waited for them on
its event loop). Meanwhile, one after the other, `--probes`
GET /healthz (a new connection each, `--probe-timeout` each) and as many Datadog alerts are sent. Printed: the
/healthz latency (p50, max, timeouts), the alerts' accept latency (p50, max) and statuses, and what became of the
slow connections (answered 408, closed, or still open `--watch` seconds later).

The probes run well inside the bridge's request read timeout (BRIDGE_REQUEST_READ_TIMEOUT, 10 s by default), so
every slow connection is still held open while they run. Figures are printed, never asserted; the behaviour tests
with the issue's bounds are tests/integration/test_slow_clients.py.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx2

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench.common import fmt_ms, log, percentile  # noqa: E402
from bench.payloads import unique_body  # noqa: E402
from bench.servers import bridge, serve_defaults  # noqa: E402
from bench.testsupport import TOKEN  # noqa: E402

PARTIAL_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
LINGERING_REQUEST = b"GET /readyz HTTP/1.0\r\n\r\n"


def half_body_request(body: bytes) -> bytes:
    """A Datadog webhook's headers and the first half of its body."""
    head = (f"POST /webhooks/datadog HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body[:len(body) // 2]


def open_slow(port: int, data: bytes) -> socket.socket:
    """A connection that sent `data` and will send nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def probe(port: int, timeout: float) -> float | None:
    """Seconds for GET /healthz on a new connection to answer 200 (a raw socket: no client library's set-up in
    the figure); None when it did not within `timeout`."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
                if time.monotonic() - started > timeout:
                    return None
    except OSError:  # timeouts included
        return None
    return time.monotonic() - started if answer.startswith(b"HTTP/1.1 200 ") else None


def post_alert(url: str, body: bytes, timeout: float) -> tuple[str, float]:
    """(status or the error's name, seconds) of one Datadog webhook."""
    started = time.monotonic()
    try:
        response = httpx2.post(f"{url}/webhooks/datadog", content=body, timeout=timeout,
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        outcome = str(response.status_code)
    except httpx2.TransportError as exc:
        outcome = type(exc).__name__
    return outcome, time.monotonic() - started


def fate(sock: socket.socket, until: float) -> str:
    """What the server did with a slow connection by `until`: its status code, 'closed', or 'open'."""
    data = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return "open" if not data else "partial answer"
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return "reset"
        if not chunk:
            return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
        data += chunk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=200, help="connections sending partial headers (200)")
    parser.add_argument("--half-bodies", type=int, default=50, help="connections sending half a body (50)")
    parser.add_argument("--lingering", type=int, default=0,
                        help="connections sending a whole HTTP/1.0 request and never closing (0)")
    parser.add_argument("--probes", type=int, default=20, help="GET /healthz probes, and as many alerts (20)")
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="seconds per probe and alert (10)")
    parser.add_argument("--watch", type=float, default=15.0,
                        help="seconds after the first slow connection to see what became of them (15)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp, bridge(Path(tmp)) as (process, _fake, _env):
        log(f"bridge: {serve_defaults()}")
        run = f"slow{int(time.time())}"
        started = time.monotonic()
        slow = [open_slow(process.port, PARTIAL_HEADERS) for _ in range(args.slow)]
        slow += [open_slow(process.port, half_body_request(unique_body(run, 100000 + i)))
                 for i in range(args.half_bodies)]
        lingering = [open_slow(process.port, LINGERING_REQUEST) for _ in range(args.lingering)]
        log(f"{args.slow} partial-header, {args.half_bodies} half-body and {args.lingering} lingering connections "
            f"open in {time.monotonic() - started:.2f} s")
        time.sleep(0.5)  # let the workers accept them all before measuring

        latencies: list[float] = []
        timeouts = 0
        alerts: list[float] = []
        outcomes: Counter[str] = Counter()
        window = time.monotonic()
        for i in range(args.probes):
            seconds = probe(process.port, args.probe_timeout)
            if seconds is None:
                timeouts += 1
            else:
                latencies.append(seconds)
            outcome, took = post_alert(process.url, unique_body(run, i), args.probe_timeout)
            outcomes[outcome] += 1
            if outcome == "202":
                alerts.append(took)
        window = time.monotonic() - window

        fates = Counter(fate(sock, started + args.watch) for sock in slow)
        for sock in slow + lingering:
            sock.close()

    print(json.dumps({
        "slow_connections": {"partial_headers": args.slow, "half_bodies": args.half_bodies,
                             "lingering": args.lingering},
        "probing_window_s": round(window, 2),
        "healthz": {"probes": args.probes, "answered": len(latencies), "timeouts": timeouts,
                    "timeout_s": args.probe_timeout, "p50": fmt_ms(percentile(latencies, 0.5)),
                    "max": fmt_ms(max(latencies) if latencies else None)},
        "alerts": {"sent": args.probes, "statuses": dict(outcomes), "accepted_p50": fmt_ms(percentile(alerts, 0.5)),
                   "accepted_max": fmt_ms(max(alerts) if alerts else None)},
        f"slow_connections_after_{args.watch:g}s": dict(fates),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
