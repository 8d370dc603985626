"""Ingest benchmark: accepted alerts per second, and the time from webhook to PagerDuty's receipt.

Runs the real `incident-bridge serve` (gunicorn + delivery worker, SQLite) against the loopback PagerDuty fake,
posts Datadog alerts over HTTP from several client threads, and prints figures. Everything stays on 127.0.0.1.

    python benchmarks/ingest.py                 # defaults: 2,000 alerts, 8 client threads
    python benchmarks/ingest.py --alerts 5000 --clients 16

Two phases:
1. throughput: as fast as the clients can post, each alert a new incident; accepted alerts per second
   (2xx answers, each committed with its delivery job before the answer).
2. latency: a paced stream (below PagerDuty's 120 events/min limit) and the time from the webhook POST to the
   fake PagerDuty's receipt of the trigger, p50/p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.fakes.pagerduty import FakePagerDuty  # noqa: E402
from tests.support.server import ROUTING_KEY, TOKEN, BridgeProcess, bridge_env  # noqa: E402


def payload(i: int, run: str) -> bytes:
    return json.dumps({
        "id": f"{run}-{i}", "alert_id": str(100000 + i), "transition": "Triggered", "alert_type": "error",
        "title": f"[Triggered on {{service:svc-{i}}}] Error rate high", "scope": f"service:svc-{i}",
        "tags": f"monitor,dimension:users_affected_pct,service:svc-{i},env:prod",
        "text": "Error rate high\nbridge.value: 27\n", "event_type": "query_alert_monitor",
        "date": str(int(time.time() * 1000)),
    }).encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-alerts", type=int, default=60)
    parser.add_argument("--latency-rate", type=float, default=1.5, help="alerts per second in phase 2")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with tempfile.TemporaryDirectory() as tmp, FakePagerDuty(tls=False) as pd:
        env = bridge_env(Path(tmp), PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url,
                         BRIDGE_LOG_LEVEL="WARNING", BRIDGE_EVENTS_PER_MINUTE="0")
        bridge = BridgeProcess(Path(tmp), env, args=("--threads", "16")).start()
        try:
            # Phase 1: throughput.
            client = httpx2.Client(timeout=30.0, limits=httpx2.Limits(max_connections=args.clients))
            statuses: list[int] = []
            lock = threading.Lock()

            def post(i: int) -> None:
                r = client.post(f"{bridge.url}/webhooks/datadog", content=payload(i, "tp"), headers=headers)
                with lock:
                    statuses.append(r.status_code)

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(post, range(args.alerts)))
            elapsed = time.perf_counter() - started
            accepted = sum(1 for s in statuses if 200 <= s < 300)
            print(f"throughput: {accepted}/{args.alerts} alerts accepted in {elapsed:.2f} s = "
                  f"{accepted / elapsed:.0f} alerts/s ({args.clients} client threads, SQLite WAL, 1 gunicorn "
                  "worker x 16 threads)")
            deadline = time.monotonic() + 300
            while len(pd.events) < accepted and time.monotonic() < deadline:
                time.sleep(0.2)
            drained = time.perf_counter() - started
            print(f"delivery: {len(pd.events)} triggers at the fake PagerDuty {drained:.1f} s after the first post "
                  f"({len(pd.events) / drained:.0f} events/s, rate limit off for this phase)")

            # Phase 2: latency, paced.
            sent_at: dict[str, float] = {}
            for i in range(args.latency_alerts):
                body = payload(100000 + i, "lat")
                t0 = time.time()
                r = client.post(f"{bridge.url}/webhooks/datadog", content=body, headers=headers)
                key = r.json()["alerts"][0]["dedup_key"]
                sent_at[key] = t0
                time.sleep(1.0 / args.latency_rate)
            time.sleep(2.0)
            latencies = []
            for e in pd.events:
                if e.dedup_key in sent_at:
                    latencies.append((e.received_at - sent_at[e.dedup_key]) * 1000)
            print(f"latency webhook -> PagerDuty receipt over {len(latencies)} alerts at "
                  f"{args.latency_rate:g}/s: p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms, "
                  f"mean {statistics.mean(latencies):.1f} ms")
            pd.assert_no_invalid_requests()
        finally:
            bridge.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
