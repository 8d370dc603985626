"""What the schema migrations cost: opening a store whose schema is at head (every process and gunicorn worker does
it at start), and `db upgrade` of a pre-journal database with many alerts (revision 0002 backfills every alert's
`journaled_at` and `decided_at` and builds the new indexes).

    PYTHONPATH=$PWD python benchmarks/migrations.py [--alerts N] [--opens N]

Prints figures; asserts nothing. SQLite in a temp directory.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bridge.store import Store
from tests.support.prejournal import PREJOURNAL_SQL


def prejournal_with(path: Path, count: int) -> None:
    """The pre-journal fixture, with `count` more alerts copied from its first one (new event ids)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(PREJOURNAL_SQL.read_text(encoding="utf-8"))
        row = list(conn.execute("SELECT * FROM alerts WHERE id = 1").fetchone())
        names = [r[1] for r in conn.execute("PRAGMA table_info(alerts)")]
        event = names.index("source_event_id")
        rows = []
        for i in range(count):
            copy = list(row)
            copy[0] = None
            copy[event] = f"bench-{i}"
            rows.append(copy)
        conn.executemany(f"INSERT INTO alerts VALUES ({', '.join('?' * len(names))})", rows)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--opens", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old.db"
        prejournal_with(old, args.alerts)
        store = Store.connect(f"sqlite:///{old}")
        started = time.perf_counter()
        before, after = store.upgrade_schema()
        upgrade = time.perf_counter() - started
        store.engine.dispose()
        print(f"db upgrade {before.current} -> {after.current} of a pre-journal database with "
              f"{args.alerts + 7:,} alerts: {upgrade:.2f} s")
        opens = []
        for _ in range(args.opens):
            started = time.perf_counter()
            opened = Store.open(f"sqlite:///{old}")
            opens.append(time.perf_counter() - started)
            opened.engine.dispose()
        print(f"Store.open at head (schema status read, nothing written), {args.opens} opens: median "
              f"{statistics.median(opens) * 1000:.1f} ms, max {max(opens) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
