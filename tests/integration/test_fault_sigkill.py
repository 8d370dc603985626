"""SIGKILL at random moments of a storm, 10 times in a row (RELIABILITY.md, "SIGKILL"): `serve` (its whole process
group), gunicorn's master, a web worker, and the worker process (the pipeline stage and the delivery lanes),
chosen at random with a printed seed. Senders re-post what got no 2xx, as Datadog does. Every alert that got a 2xx
is decided and paged, and no dedup key opens two incidents (in the database or at PagerDuty). Re-sent triggers
(a kill between PagerDuty's answer and the outbox's record) are counted, not failed: PagerDuty absorbs them by
dedup key. benchmarks/reliability_sigkill.py runs more rounds and alerts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.faults import run_kills

pytestmark = pytest.mark.integration


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def test_ten_kills_in_a_storm_lose_nothing_and_open_no_incident_twice(tmp_path: Path, pd: FakePagerDuty) -> None:
    # A new seed each run (override with FAULT_SEED to replay one); printed, and in the failure message.
    seed = int(os.environ.get("FAULT_SEED") or time.time_ns() % 1_000_000)
    print(f"\nFAULT_SEED={seed}")
    figures = run_kills(tmp_path, pd, rounds=10, seed=seed, rate=10, alerts=300, gap=(0.3, 2.0),
                        log=print)
    print("\n".join(figures.lines()))
    result = figures.audit
    assert len(figures.kills) == 10
    assert result.accepted >= 300, f"seed {seed}: {result.summary()}"
    assert result.ok, f"seed {seed}: {result.summary()}"
    assert figures.drain_seconds != float("inf"), f"seed {seed}"
