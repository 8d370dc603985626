"""The bridge while another writer holds its SQLite database: webhook answers, /healthz and /readyz.

Usage (from the repository root):
    python benchmarks/resilience_locked_db.py                    # hold the database for 40 s
    python benchmarks/resilience_locked_db.py --seconds 10 --senders 4 --lock-timeout 1
    python benchmarks/resilience_locked_db.py --hold sqlite      # only SQLite's lock (an operator's sqlite3)

Starts `python -m bridge serve` with its default flags on SQLite (against the fake PagerDuty in its own process),
accepts one alert, then holds the database for `--seconds`: SQLite's write lock from a connection of its own in
BEGIN IMMEDIATE, and the bridge's writer lock file (`<db>-writer.lock`), as another bridge process mid-write
would (`--hold` picks one). Meanwhile `--senders` Datadog senders post new alerts one after another with
Datadog's 15 s timeout, and a prober asks /healthz and /readyz every second. Printed: every answer's status and
seconds (a sender that timed out is `timeout`: Datadog counts a missed connection), summaries, how long /readyz
took to say ready after the release, and whether anything was lost: every alert answered 2xx must be stored,
and every one refused is sent again, as Datadog retries a 5xx, and must then be accepted.

Figures are printed, never asserted (tests/integration/test_locked_database.py holds the bounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.payloads import unique_body  # noqa: E402
from bench.servers import bridge  # noqa: E402
from bench.testsupport import ADMIN_TOKEN, TOKEN, DatabaseHolder  # noqa: E402

DATADOG_TIMEOUT = 15.0  # Datadog's webhook timeout per request (shared/reference/datadog.md, section 4)


@dataclass
class Answer:
    """One request during the run: when it started (seconds after the hold began), its status, its seconds."""

    what: str
    started: float
    status: str
    seconds: float
    event_id: str = ""


def post(client: httpx2.Client, url: str, event_id: str, i: int) -> tuple[str, float]:
    began = time.monotonic()
    try:
        r = client.post(f"{url}/webhooks/datadog", content=unique_body(event_id.rsplit("-", 1)[0], i),
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        status = str(r.status_code)
        if r.status_code == 503:
            status += f" (Retry-After {r.headers.get('Retry-After', '-')})"
    except httpx2.TimeoutException:
        status = "timeout"
    except httpx2.TransportError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - began


def sender(url: str, run: str, first: int, stop: threading.Event, t0: float, out: list[Answer],
           lock: threading.Lock) -> None:
    i = first
    with httpx2.Client(timeout=DATADOG_TIMEOUT) as client:
        while not stop.is_set():
            event_id = f"{run}-{i}"
            started = time.monotonic() - t0
            status, seconds = post(client, url, event_id, i)
            with lock:
                out.append(Answer("webhook", started, status, seconds, event_id))
            i += 1000  # each sender its own range of alerts
            stop.wait(0.2)


def prober(url: str, stop: threading.Event, t0: float, out: list[Answer], lock: threading.Lock) -> None:
    with httpx2.Client(timeout=30.0) as client:
        while not stop.is_set():
            for path in ("/healthz", "/readyz"):
                started = time.monotonic() - t0
                began = time.monotonic()
                try:
                    r = client.get(f"{url}{path}")
                    status = str(r.status_code)
                    if r.status_code != 200:
                        status += f" {r.json().get('problems', '')}"
                except httpx2.TransportError as exc:
                    status = type(exc).__name__
                with lock:
                    out.append(Answer(path, started, status, time.monotonic() - began))
            stop.wait(1.0)


def summary(answers: list[Answer]) -> str:
    by_status: dict[str, list[float]] = {}
    for a in answers:
        by_status.setdefault(a.status.split(" (")[0], []).append(a.seconds)
    return "; ".join(f"{status}: {len(s)} (min {min(s):.2f} s, median {statistics.median(s):.2f} s, "
                     f"max {max(s):.2f} s)" for status, s in sorted(by_status.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the database is held (default 40)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent Datadog senders (default 8)")
    parser.add_argument("--hold", choices=("both", "sqlite", "writer"), default="both",
                        help="which lock to hold: both (default), SQLite's only, the writer lock file only")
    parser.add_argument("--lock-timeout", type=float, default=None,
                        help="BRIDGE_DB_LOCK_TIMEOUT for the bridge (default: the bridge's own default)")
    args = parser.parse_args()
    overrides = {} if args.lock_timeout is None else {"BRIDGE_DB_LOCK_TIMEOUT": f"{args.lock_timeout:g}"}
    with tempfile.TemporaryDirectory(prefix="bridge-locked-db-") as tmpdir:
        tmp = Path(tmpdir)
        with bridge(tmp, **overrides) as (process, _fake, _env):
            url = process.url
            run = f"locked{int(time.time())}"
            with httpx2.Client(timeout=DATADOG_TIMEOUT) as client:
                first, seconds = post(client, url, f"{run}-0", 0)
            print(f"before the hold: webhook {first} in {seconds:.3f} s")
            answers: list[Answer] = []
            lock = threading.Lock()
            stop = threading.Event()
            holder = DatabaseHolder(tmp / "bridge.db", sqlite_lock=args.hold in ("both", "sqlite"),
                                    writer_lock=args.hold in ("both", "writer"))
            with holder:
                t0 = time.monotonic()
                print(f"holding the database ({args.hold}) for {args.seconds:g} s; {args.senders} senders")
                threads = [threading.Thread(target=sender, args=(url, run, 1 + n, stop, t0, answers, lock))
                           for n in range(args.senders)]
                threads.append(threading.Thread(target=prober, args=(url, stop, t0, answers, lock)))
                for t in threads:
                    t.start()
                time.sleep(args.seconds)
                stop.set()
            released = time.monotonic()
            print(f"released after {released - t0:.1f} s; waiting for the requests in flight")
            for t in threads:
                t.join()
            ready_after = None
            while time.monotonic() - released < 60:
                if httpx2.get(f"{url}/readyz", timeout=10.0).status_code == 200:
                    ready_after = time.monotonic() - released
                    break
                time.sleep(0.05)

            print("\n| what | started (s) | answer | seconds |\n|---|---|---|---|")
            for a in sorted(answers, key=lambda a: a.started):
                print(f"| {a.what} | {a.started:.1f} | {a.status} | {a.seconds:.2f} |")
            webhooks = [a for a in answers if a.what == "webhook"]
            print()
            for what in ("webhook", "/healthz", "/readyz"):
                print(f"{what}: {summary([a for a in answers if a.what == what]) or 'none'}")
            print(f"/readyz ready again {ready_after:.2f} s after the release" if ready_after is not None
                  else "/readyz not ready within 60 s of the release")

            # Datadog retries a 5xx (and a missed connection): send every refused alert again.
            refused = [a for a in webhooks if not a.status.startswith("2")]
            retried = []
            with httpx2.Client(timeout=DATADOG_TIMEOUT) as client:
                for a in refused:
                    retried.append(post(client, url, a.event_id, int(a.event_id.rsplit("-", 1)[1]))[0])
            accepted = {a.event_id for a in webhooks if a.status.startswith("2")} | {f"{run}-0"} | {
                a.event_id for a, status in zip(refused, retried, strict=True) if status.startswith("2")}
            stored = {a["source_event_id"] for a in httpx2.get(
                f"{url}/api/v1/alerts?limit=1000", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10.0).json()["alerts"]}
            print(f"refused during the hold and sent again: {len(refused)}, answered "
                  f"{', '.join(sorted(set(retried))) or '-'}")
            lost = accepted - stored
            print(f"answered 2xx (before, during and after the hold): {len(accepted)}; stored: {len(stored)}; "
                  f"accepted but not stored: {len(lost)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
