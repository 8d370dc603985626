"""A soak: the bridge under a steady mixed stream for a long time, sampling what could grow.

    python benchmarks/soak.py                          # 30 minutes, 20 alerts/s, SQLite
    python benchmarks/soak.py --minutes 1 --rate 5     # a smoke run
    python benchmarks/soak.py --postgres postgresql+psycopg://postgres@127.0.0.1:54329/postgres
    python benchmarks/soak.py --groups 200 --resolve-share 0.02    # pages below PagerDuty's 120 events/min
    python benchmarks/soak.py --csv /tmp/soak.csv --env BRIDGE_LOG_LEVEL=INFO

What it does: starts `python -m bridge serve` with its default flags (bench.servers.bridge: gunicorn, the pipeline
stage and the delivery worker) against the PagerDuty fake in its own process, and sends `--rate` alerts a second
for `--minutes`, open loop: Datadog webhooks and Alertmanager batches of one alert, over `--groups` groups (so
repeats fold into open incidents), `--resolve-share` of them recoveries (so incidents close and reopen). Every
`--sample` seconds it records, for every process of the bridge's process group: resident memory (RSS) and open
file descriptors; and the database size (with SQLite's -wal file, reported apart), the journal's undecided
entries (`GET /api/v1/pipeline`), unfinished jobs and the row counts of alerts, incidents and jobs.

Prints: per measure, the mean of the first and the last 10 % of the samples, the growth between them, and the
least-squares slope per hour over the whole run and over its second half (without the warm-up); the requests
sent, answered 2xx, and refused or failed. Figures are printed, never asserted (a soak is not a CI test). `--csv`
writes every sample.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import httpx2  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from bench.common import log  # noqa: E402
from bench.payloads import datadog_event, encode, rfc3339  # noqa: E402
from bench.postgres import fresh_database  # noqa: E402
from bench.servers import bridge  # noqa: E402
from bench.testsupport import ADMIN_TOKEN, TOKEN  # noqa: E402

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- the traffic ------------------------------------------------------------------------------------------------


def datadog_body(run: str, i: int, group: int, resolve: bool) -> bytes:
    """Alert `i`: monitor `group` on its own service; a recovery when `resolve`."""
    event = datadog_event(
        event_id=f"{run}-dd-{i}", monitor_id=str(300000 + group),
        title=f"[{'Recovered' if resolve else 'Triggered'} on {{service:soak-{group}}}] Error rate high",
        scope=f"service:soak-{group},env:prod",
        tags=f"monitor,dimension:users_affected_pct,service:soak-{group},env:prod",
        metric="checkout.errors.failed_users_pct")
    if resolve:
        event.update(transition="Recovered", alert_type="success")
    return encode(event)


def alertmanager_body(run: str, i: int, group: int, resolve: bool) -> bytes:
    """Alert `i` as Alertmanager's webhook (version 4) carries it, one alert: its fingerprint is the group, and
    its value the alert's number, so each firing repeat is a new journal entry of the same incident."""
    now = dt.datetime.now(dt.UTC)
    alert = {
        "status": "resolved" if resolve else "firing",
        "labels": {"alertname": "SoakErrorRate", "soak_group": str(group), "service": f"soak-am-{group}",
                   "env": "prod", "severity": "critical", "dimension": "users_affected_pct"},
        "annotations": {"summary": f"Error rate high on soak-am-{group}", "value": str(20 + i % 50)},
        "startsAt": rfc3339(now - dt.timedelta(minutes=5)),
        "endsAt": rfc3339(now) if resolve else "0001-01-01T00:00:00Z",
        "fingerprint": f"{group:016x}",
    }
    body = {"version": "4", "status": alert["status"], "receiver": "bridge",
            "groupKey": f'{{}}:{{soak_group="{group}"}}', "groupLabels": {"soak_group": str(group)},
            "commonLabels": alert["labels"], "truncatedAlerts": 0, "alerts": [alert], "externalURL": run}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Traffic:
    """Counts of what the sender sent and how it was answered."""

    sent: int = 0
    ok: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    late: int = 0  # requests that left more than a second behind schedule
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int) -> None:
        with self.lock:
            self.sent += 1
            if 200 <= status < 300:
                self.ok += 1
            else:
                key = str(status or "no answer")
                self.refused[key] = self.refused.get(key, 0) + 1


def send_steadily(base: str, rate: float, until: float, groups: int, resolve_share: float, traffic: Traffic,
                  stop: threading.Event, seed: int = 16) -> None:
    """Open loop: request i leaves at start + i/rate on a pool of clients, whatever the answers."""
    rnd = random.Random(seed)
    run = f"soak{int(time.time())}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    pool = 16
    clients: queue.SimpleQueue[httpx2.Client] = queue.SimpleQueue()
    for _ in range(pool):
        clients.put(httpx2.Client(headers=headers, timeout=30.0))

    def post(path: str, body: bytes) -> None:
        client = clients.get()
        try:
            status = client.post(base + path, content=body).status_code
        except httpx2.HTTPError:
            status = 0
        finally:
            clients.put(client)
        traffic.answer(status)

    start = time.monotonic()
    with ThreadPoolExecutor(pool, thread_name_prefix="soak") as executor:
        i = 0
        while not stop.is_set():
            due = start + i / rate
            if due >= until:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                traffic.late += 1
            group = rnd.randrange(groups)
            resolve = rnd.random() < resolve_share
            if rnd.random() < 0.7:
                executor.submit(post, "/webhooks/datadog", datadog_body(run, i, group, resolve))
            else:
                executor.submit(post, "/webhooks/alertmanager", alertmanager_body(run, i, group, resolve))
            i += 1
    while not clients.empty():
        clients.get().close()


# -- the samples ------------------------------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    """The processes of process group `pgid` (the bridge's supervisor, gunicorn and its workers, the worker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                pids.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return sorted(pids)


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (0 when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def open_fds(pid: int) -> int:
    """Open file descriptors of `pid` (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Sampler:
    """One row of figures per call: memory and descriptors of the bridge's processes, database and journal."""

    def __init__(self, pgid: int, base: str, database_url: str) -> None:
        self.pgid = pgid
        self.admin = httpx2.Client(base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        self.engine = sa.create_engine(database_url)
        self.sqlite = Path(database_url.removeprefix("sqlite:///")) if database_url.startswith("sqlite") else None

    def database_bytes(self) -> tuple[int, int]:
        """(database size, WAL size): the files on SQLite; pg_database_size and pg_current_wal_lsn's
        distance from the start on PostgreSQL is not per database, so the WAL is reported as 0 there."""
        if self.sqlite is not None:
            return file_size(self.sqlite), file_size(Path(f"{self.sqlite}-wal"))
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()), 0

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM incidents), "
                "(SELECT count(*) FROM jobs), "
                "(SELECT count(*) FROM jobs WHERE state IN ('pending', 'sending'))")).one()
        return {"alerts": int(row[0]), "incidents": int(row[1]), "jobs": int(row[2]), "jobs_unfinished": int(row[3])}

    def sample(self, t: float) -> dict[str, float]:
        pids = group_pids(self.pgid)
        row: dict[str, float] = {"t": round(t, 1), "processes": len(pids)}
        row["rss_total_mb"] = round(sum(rss_bytes(p) for p in pids) / 2**20, 2)
        row["rss_max_mb"] = round(max((rss_bytes(p) for p in pids), default=0) / 2**20, 2)
        row["fds_total"] = sum(open_fds(p) for p in pids)
        db, wal = self.database_bytes()
        row["db_mb"] = round(db / 2**20, 3)
        row["wal_mb"] = round(wal / 2**20, 3)
        try:
            r = self.admin.get("/api/v1/pipeline")
            row["undecided"] = int(r.json()["journal"]["undecided"]) if r.status_code == 200 else -1
        except (httpx2.HTTPError, ValueError, KeyError, TypeError):
            row["undecided"] = -1
        row.update(self.counts())
        return row

    def close(self) -> None:
        self.admin.close()
        self.engine.dispose()


# -- the figures ------------------------------------------------------------------------------------------------


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per hour."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var * 3600


def growth(rows: list[dict[str, float]], key: str) -> tuple[float, float, float, float, float]:
    """(mean of the first 10 %, mean of the last 10 %, their difference, slope per hour over the whole run, and
    over its second half) of column `key`. The second half leaves the warm-up out (caches filling, pools opening):
    growth that goes on there is what would go on for days."""
    tenth = max(1, len(rows) // 10)
    first = [r[key] for r in rows[:tenth]]
    last = [r[key] for r in rows[-tenth:]]
    a, b = sum(first) / len(first), sum(last) / len(last)
    half = rows[len(rows) // 2:]
    return (a, b, b - a, slope_per_hour([r["t"] for r in rows], [r[key] for r in rows]),
            slope_per_hour([r["t"] for r in half], [r[key] for r in half]))


MEASURES = ("rss_total_mb", "rss_max_mb", "fds_total", "processes", "db_mb", "wal_mb", "undecided",
            "jobs_unfinished", "alerts", "incidents", "jobs")


def report(rows: list[dict[str, float]], traffic: Traffic, args: argparse.Namespace, engine: str) -> None:
    seconds = rows[-1]["t"] if rows else 0.0
    print(f"soak: {args.minutes:g} min at {args.rate:g} alerts/s on {engine}, {args.groups} groups, "
          f"{args.resolve_share:.0%} recoveries; {len(rows)} samples every {args.sample:g} s over {seconds:.0f} s")
    print(f"requests: {traffic.sent} sent, {traffic.ok} answered 2xx, refused or failed: "
          f"{traffic.refused or 'none'}; left >1 s late: {traffic.late}")
    print(f"{'measure':<17}{'first 10%':>12}{'last 10%':>12}{'growth':>12}{'slope/hour':>13}{'2nd half/h':>13}")
    for key in MEASURES:
        a, b, d, s, s2 = growth(rows, key)
        print(f"{key:<17}{a:>12.2f}{b:>12.2f}{d:>+12.2f}{s:>+13.2f}{s2:>+13.2f}")


def run(args: argparse.Namespace, database_url: str | None) -> int:
    overrides = dict(item.split("=", 1) for item in args.env)
    overrides.setdefault("BRIDGE_ADMIN_TOKEN", ADMIN_TOKEN)
    with tempfile.TemporaryDirectory(prefix="bridge-soak-") as tmp_name:
        tmp = Path(tmp_name)
        with bridge(tmp, database_url=database_url, **overrides) as (process, _fake, env):
            assert process.proc is not None
            sampler = Sampler(process.proc.pid, process.url, env["BRIDGE_DATABASE_URL"])
            traffic = Traffic()
            stop = threading.Event()
            started = time.monotonic()
            until = started + args.minutes * 60
            sender = threading.Thread(target=send_steadily, name="soak-sender", daemon=True,
                                      args=(process.url, args.rate, until, args.groups, args.resolve_share, traffic,
                                            stop))
            sender.start()
            rows: list[dict[str, float]] = []
            writer: Callable[[dict[str, float]], None] | None = None
            out = open(args.csv, "w", newline="") if args.csv else None  # noqa: SIM115 (closed below)
            try:
                while time.monotonic() < until:
                    row = sampler.sample(time.monotonic() - started)
                    rows.append(row)
                    if out is not None:
                        if writer is None:
                            dict_writer = csv.DictWriter(out, fieldnames=list(row))
                            dict_writer.writeheader()
                            writer = dict_writer.writerow
                        writer(row)
                        out.flush()
                    log(f"t={row['t']:.0f}s sent={traffic.sent} ok={traffic.ok} rss={row['rss_total_mb']} MB "
                        f"fds={row['fds_total']:.0f} db={row['db_mb']} MB wal={row['wal_mb']} MB "
                        f"undecided={row['undecided']:.0f} jobs_unfinished={row['jobs_unfinished']}")
                    stop.wait(min(args.sample, max(0.0, until - time.monotonic())))
                stop.set()
                sender.join(timeout=60)
                rows.append(sampler.sample(time.monotonic() - started))
            finally:
                stop.set()
                sampler.close()
                if out is not None:
                    out.close()
            report(rows, traffic, args, "PostgreSQL" if database_url else "SQLite")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to send (default 30)")
    parser.add_argument("--rate", type=float, default=20.0, help="alerts per second (default 20)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--groups", type=int, default=500, help="distinct alert groups (default 500)")
    parser.add_argument("--resolve-share", type=float, default=0.2, help="share of recoveries (default 0.2)")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL: a fresh database on it")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the bridge (repeatable), e.g. BRIDGE_EVENTS_PER_MINUTE=600")
    parser.add_argument("--csv", help="write every sample to this file")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    if args.postgres:
        with fresh_database(args.postgres) as url:
            return run(args, url)
    return run(args, None)


if __name__ == "__main__":
    sys.exit(main())
