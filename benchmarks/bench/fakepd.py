"""FakePagerDuty in a process of its own, and the client the benchmark uses to read what it received.

Why its own process: the fake validates every event against PagerDuty's schema, in Python. In the process that
also runs the load generator's threads, both would share one GIL, and the fake's recorded arrival times would
include waits for the generator. Here the fake only shares the machine's cores.

`python -m bench.fakepd` (from benchmarks/) starts the fake on plain HTTP (the bridge takes
`PAGERDUTY_EVENTS_URL=http://...`), prints its URL on stdout and runs until its stdin closes (the parent
exited, whichever way). Besides PagerDuty's own paths it answers `GET /_bench/events?since=N`: the Events API
events from index N, each `[received_at, event_action, dedup_key]`, with `received_at` the fake's arrival time
(`time.time()`, taken when the request was read), and the count of requests it rejected as invalid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from bench.common import BENCH_DIR, CHILDREN

EVENTS_PATH = "/_bench/events"


def serve() -> None:
    """The child process: the fake until stdin closes."""
    from bench.testsupport import FakePagerDuty, Reply

    class BenchPagerDuty(FakePagerDuty):  # type: ignore[misc]
        """FakePagerDuty (rate limit off: its default) plus the event list with arrival times."""

        def _handle(self, request: Any) -> Any:  # runs under self.lock
            if request.method == "GET" and request.path == EVENTS_PATH:
                since = int(request.query.get("since", ["0"])[0])
                rows = [[e.received_at, e.event_action, e.dedup_key] for e in self.events[since:]]
                return Reply(200, {"events": rows, "invalid": len(self.invalid_requests),
                                   "requests": len(self.requests)})
            return super()._handle(request)

    fake = BenchPagerDuty(tls=False)
    fake.start()
    print(fake.url, flush=True)
    try:
        sys.stdin.read()  # EOF when the parent exits
    finally:
        fake.stop()


@dataclass
class Event:
    received_at: float
    action: str
    dedup_key: str | None


class FakePagerDutyProcess:
    """The parent's handle: start, read the events incrementally, stop."""

    def __init__(self, tmp: Path) -> None:
        self.log_path = tmp / f"fakepd-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.events: list[Event] = []
        self.invalid = 0
        self._client = httpx2.Client(timeout=30.0)

    def __enter__(self) -> FakePagerDutyProcess:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = CHILDREN.popen([sys.executable, "-m", "bench.fakepd"], cwd=BENCH_DIR, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            CHILDREN.kill(self.proc)
            output = self.log_path.read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"the PagerDuty fake did not start: {' | '.join(output[-3:]) or 'no output'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                CHILDREN.kill(self.proc)

    def refresh(self) -> list[Event]:
        """Fetch the events received since the last call; returns all events so far."""
        answer = self._client.get(f"{self.url}{EVENTS_PATH}", params={"since": len(self.events)})
        answer.raise_for_status()
        data = answer.json()
        self.events.extend(Event(float(t), str(a), k) for t, a, k in data["events"])
        self.invalid = int(data["invalid"])
        return self.events

    def triggers(self) -> list[Event]:
        """The trigger events received so far (refresh() first)."""
        return [e for e in self.events if e.action == "trigger"]


if __name__ == "__main__":
    serve()
