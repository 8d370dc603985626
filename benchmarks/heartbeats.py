"""What heartbeats cost: rule evaluation per alert with 0 to 200 heartbeats in the rules (every alert is tried
against every heartbeat), and one look of the worker's watch (`HeartbeatWatch.check`: two reads, `assess`) on
SQLite with as many heartbeats, all ok, and all missed (journaling one page each).

    python benchmarks/heartbeats.py
    python benchmarks/heartbeats.py --sizes 0,50 --alerts 5000

Figures are printed, never asserted (benchmarks print figures; tests have no timed assertions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.model import Alert, AlertState  # noqa: E402
from bridge.pipeline.heartbeats import HeartbeatWatch  # noqa: E402
from bridge.rules.engine import evaluate  # noqa: E402
from bridge.rules.loader import compile_sources, read_sources, shipped_rules_dir  # noqa: E402
from bridge.rules.model import Ruleset  # noqa: E402
from bridge.store import Store  # noqa: E402

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def ruleset(beats: int) -> Ruleset:
    """The shipped rules plus `beats` heartbeats, each on one Datadog monitor (so none matches the stream)."""
    text = "version: 1\nheartbeats:\n" + "".join(
        f"  - name: canary-{i}\n    match: {{source: datadog, monitor_id: \"9{i:05d}\"}}\n    every: 5m\n"
        for i in range(beats)) if beats else "version: 1\n"
    sources = [s for s in read_sources(shipped_rules_dir()) if not s[0].endswith("heartbeats.yaml")]
    return compile_sources([*sources, ("zz-heartbeats.yaml", text)], shipped_rules_dir()).ruleset


def alerts(n: int) -> list[Alert]:
    return [Alert(source="datadog", source_event_id=f"e{i}", received_at=NOW, title=f"[Triggered] disk {i}",
                  state=AlertState.FIRING, group_key=f"g{i}", service=f"svc-{i % 40}",
                  tags=(("env", "prod"), ("dimension", "users_affected_pct")), value=12.0,
                  fields={"monitor_id": str(1000 + i % 500), "transition": "Triggered"}) for i in range(n)]


def evaluation(sizes: list[int], n: int) -> None:
    stream = alerts(n)
    print("rule evaluation per alert (shipped rules + N heartbeats)")
    for size in sizes:
        rs = ruleset(size)
        times = []
        for alert in stream:
            start = time.perf_counter()
            evaluate(alert, rs, NOW)
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"  {size:>4} heartbeats: p50 {statistics.median(times) * 1e6:7.1f} us   "
              f"p99 {times[int(len(times) * 0.99)] * 1e6:7.1f} us")


def checks(sizes: list[int]) -> None:
    print("one look of the watch on SQLite (watch_heartbeats + open incidents + assess [+ journal])")
    for size in [s for s in sizes if s]:
        rs = ruleset(size)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{Path(tmp) / 'b.db'}")
            clock = [NOW.timestamp()]
            watch = HeartbeatWatch(store, lambda rs=rs: rs, clock=lambda clock=clock: clock[0])
            watch.check()  # starts watching: one write
            ok = []
            for _ in range(20):
                clock[0] += 1
                start = time.perf_counter()
                watch.check()
                ok.append(time.perf_counter() - start)
            clock[0] += 301
            start = time.perf_counter()
            found = watch.check()
            missed = time.perf_counter() - start
            pages = len(found.alerts) if found else 0
            store.engine.dispose()
        print(f"  {size:>4} heartbeats: all waiting {statistics.median(ok) * 1e3:6.2f} ms   "
              f"all missed {missed * 1e3:7.2f} ms ({pages} pages journaled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,10,50,200")
    parser.add_argument("--alerts", type=int, default=20000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    evaluation(sizes, args.alerts)
    checks(sizes)


if __name__ == "__main__":
    main()
