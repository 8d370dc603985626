"""What the self-monitoring check costs (`bridge.delivery.watchdog.check`: the oldest pending job and the oldest
undecided alert), run by every /readyz probe, every /metrics scrape and each watchdog round.

    python benchmarks/stall_check.py                       # SQLite; 0, 1,000, 10,000 and 100,000 pending jobs
    python benchmarks/stall_check.py --sizes 0,50000

What it does: a new SQLite database with 100,000 delivered jobs (history), then the given number of pending jobs
(a backlog: PagerDuty down), and times 50 checks at each size; prints the median and the slowest in milliseconds.
Figures are printed, never asserted. On the busy 2-core machine (SQLite, 100,000 delivered jobs):

      0 pending: median 0.61 ms      1,000: 1.28 ms      10,000: 7.33 ms      100,000: 79 ms (slowest 209 ms)

A 100,000-job backlog (hours of PagerDuty down under a storm) keeps a probe well inside Kubernetes' 1 s timeout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.delivery.watchdog import check  # noqa: E402
from bridge.store import Store, jobs  # noqa: E402

T0 = 1_800_000_000.0


def rows(count: int, state: str, start: int) -> list[dict[str, object]]:
    payload = json.dumps({"event_action": "trigger"})
    return [{"kind": "event", "dedup_key": f"k{start + n}", "action": "trigger", "priority": 2,
             "payload_json": payload, "state": state, "attempts": 0, "internal_failures": 0,
             "next_attempt_at": T0 + n * 0.01, "due_since": T0 + n * 0.01, "created_at": T0, "updated_at": T0}
            for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000,10000,100000")
    parser.add_argument("--history", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        with store.transaction() as conn:
            conn.execute(jobs.insert(), rows(args.history, "delivered", 0))
        have = 0
        for size in (int(s) for s in args.sizes.split(",")):
            if size > have:
                with store.transaction() as conn:
                    conn.execute(jobs.insert(), rows(size - have, "pending", args.history + have))
                have = size
            times = []
            for _ in range(50):
                start = time.perf_counter()
                check(store, 300.0, T0 + 3600)
                times.append((time.perf_counter() - start) * 1000)
            print(f"{size:>7} pending jobs ({args.history} delivered): median {statistics.median(times):.2f} ms, "
                  f"slowest {max(times):.2f} ms")


if __name__ == "__main__":
    main()
