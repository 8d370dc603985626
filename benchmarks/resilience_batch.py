"""A huge Alertmanager batch must not block other senders: the big request's time, and Datadog's answers meanwhile.

    python benchmarks/resilience_batch.py                    # 10,000 alerts in one webhook, SQLite
    python benchmarks/resilience_batch.py --alerts 5000
    python benchmarks/resilience_batch.py --postgres postgresql+psycopg://postgres@127.0.0.1:54329/postgres

`--postgres`: a fresh database on that server (created, and dropped at the end). Starts the bridge with its
default flags against the PagerDuty fake in a process of its own (`bench.servers`),
then posts Datadog alerts every 100 ms (each on a thread of its own, so one slow answer never delays the next
send: an open loop), and ~200 ms after the first one the Alertmanager webhook with `--alerts` alerts (each its own
label set and fingerprint; 959 KB for 10,000). The Datadog sender goes on until 1 s after the big answer.

Prints: the big request's status, time and answer size; the Datadog answers sent while it was in flight (their
statuses, p50 and max); and the time until all of them are in the journal (`GET /api/v1/pipeline`, last id).
Figures are printed, never asserted (the bounds are in tests/integration/test_batch_e2e.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench.common import CHILDREN, fmt_ms, log, percentile  # noqa: E402
from bench.payloads import unique_body  # noqa: E402
from bench.postgres import fresh_database  # noqa: E402
from bench.servers import bridge  # noqa: E402
from bench.testsupport import ADMIN_TOKEN, TOKEN, alertmanager_batch  # noqa: E402

DATADOG_EVERY = 0.1  # seconds between two Datadog alerts
BIG_AFTER = 0.2  # the big request starts this long after the first Datadog alert


def run(alerts: int, postgres: str | None) -> int:
    """One measurement; returns the exit status (1 when the big request or a Datadog alert was not accepted)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        with database(postgres) as database_url, \
                bridge(tmp, database_url=database_url, BRIDGE_MAX_ALERTS_PER_REQUEST=str(alerts)) as (process, _, _):
            return measure(process.url, alerts)
    finally:
        CHILDREN.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def database(server_url: str | None) -> Iterator[str | None]:
    """A new database on the PostgreSQL server at `server_url`, dropped on exit; None (SQLite) without one."""
    if not server_url:
        yield None
        return
    with fresh_database(server_url) as url:
        yield url


def measure(url: str, alerts: int) -> int:
    """Post the batch with Datadog alerts around it; print the figures."""
    webhook = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    run_id = f"{int(time.time()) % 65536:04x}"  # short: it is in each alert's labels and fingerprint
    big_body = alertmanager_batch(alerts, run_id)
    log(f"Alertmanager body: {alerts:,} alerts, {len(big_body):,} bytes")
    with httpx2.Client(timeout=10.0) as client:
        before = int(client.get(f"{url}/api/v1/pipeline", headers=admin).json()["journal"]["last_id"])

    answers: list[tuple[float, float, int]] = []  # (sent at, seconds, status)
    lock = threading.Lock()
    big: dict[str, float | int] = {}
    done = threading.Event()

    def datadog(i: int) -> None:
        sent = time.monotonic()
        try:
            status = httpx2.post(f"{url}/webhooks/datadog", content=unique_body(run_id, i), headers=webhook,
                                 timeout=120.0).status_code
        except httpx2.TransportError:
            status = 0
        with lock:
            answers.append((sent, time.monotonic() - sent, status))

    def alertmanager() -> None:
        started = time.monotonic()
        response = httpx2.post(f"{url}/webhooks/alertmanager", content=big_body, headers=webhook, timeout=300.0)
        big.update(started=started, seconds=time.monotonic() - started, status=response.status_code,
                   size=len(response.content))
        done.set()

    threads: list[threading.Thread] = []
    start = time.monotonic()
    i = 0
    big_thread = threading.Thread(target=alertmanager)
    ended_at: float | None = None
    while ended_at is None or time.monotonic() < ended_at + 1.0:
        t = threading.Thread(target=datadog, args=(i,))
        t.start()
        threads.append(t)
        i += 1
        if not big_thread.is_alive() and "started" not in big and time.monotonic() - start >= BIG_AFTER:
            big_thread.start()
        if done.is_set() and ended_at is None:
            ended_at = time.monotonic()
        time.sleep(max(0.0, start + i * DATADOG_EVERY - time.monotonic()))
    for t in [big_thread, *threads]:
        t.join()

    big_start, big_end = float(big["started"]), float(big["started"]) + float(big["seconds"])
    during = [a for a in answers if big_start <= a[0] <= big_end]
    seconds = [s for _, s, _ in during]
    statuses = sorted({status for _, _, status in answers})
    print(f"alertmanager webhook: {alerts:,} alerts, {len(big_body):,} bytes -> {big['status']} in "
          f"{float(big['seconds']):.2f} s, answer {int(big['size']):,} bytes")
    print(f"datadog alerts sent while it was in flight: {len(during)}; p50 {fmt_ms(percentile(seconds, 0.5))}, "
          f"max {fmt_ms(max(seconds, default=None))}; statuses of all {len(answers)}: {statuses}")

    expected = (alerts if big["status"] == 202 else 0) + len(answers)
    with httpx2.Client(timeout=10.0) as client:
        def journaled() -> int:
            return int(client.get(f"{url}/api/v1/pipeline", headers=admin).json()["journal"]["last_id"]) - before

        deadline = time.monotonic() + 60
        while journaled() < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"journaled: {journaled():,} of {expected:,} (the batch and every Datadog alert)")
    return 0 if big["status"] == 202 and statuses == [202] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts in the Alertmanager webhook")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="a PostgreSQL server to make a fresh database on (default: SQLite in a temp dir)")
    args = parser.parse_args()
    sys.exit(run(args.alerts, args.postgres))


if __name__ == "__main__":
    main()
