"""End to end, through the real `incident-bridge serve`: another writer holds the SQLite database (SQLite's write
lock from a `sqlite3` connection in BEGIN IMMEDIATE, and the bridge's writer lock file, as another bridge process
mid-write would), with BRIDGE_DB_LOCK_TIMEOUT=1.

- reads (silences, alerts, incidents) answer 200 at once: they never take the write lock;
- a Datadog webhook is answered 503 database_busy with Retry-After within 1 to 2 s (Datadog retries a 5xx; a
  request that outlived its 15 s timeout would be a missed connection), and so are many at once, which gives the
  web threads back: /healthz stays 200;
- /readyz says the database cannot be written, and ready again once it can;
- released: the sender's retry is accepted, and the alert accepted before the lock is decided and paged: nothing
  accepted is lost, nothing refused was kept;
- the CLI lists silences while the database is held (opening the store took the write lock once), and a silence
  it cannot add is one line saying the database is busy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.store import Store
from tests.support.dblock import DatabaseHolder
from tests.support.e2e import datadog_payload
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

LOCK_TIMEOUT = 1.0


@pytest.fixture
def bridge(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[BridgeProcess]:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url,
                                              BRIDGE_DB_LOCK_TIMEOUT=str(LOCK_TIMEOUT))).start()
    yield proc
    proc.kill()


def alert(event_id: str, monitor: str) -> str:
    return json.dumps(datadog_payload(event_id, monitor=monitor))


def timed(call: Any) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def test_a_locked_database_answers_503_fast_keeps_reads_and_health_and_loses_nothing(
        bridge: BridgeProcess, pagerduty: FakePagerDuty, tmp_path: Path) -> None:
    before = bridge.post("/webhooks/datadog", alert("before", "100"))
    assert before.status_code == 202
    before_key = before.json()["alerts"][0]["dedup_key"]

    with DatabaseHolder(tmp_path / "bridge.db"):
        for path in ("/api/v1/silences", "/api/v1/alerts", "/api/v1/incidents"):
            read, took = timed(lambda path=path: bridge.get(path))
            assert read.status_code == 200 and took < LOCK_TIMEOUT, (path, read.status_code, took)

        refused, took = timed(lambda: bridge.post("/webhooks/datadog", alert("during", "200")))
        assert refused.status_code == 503 and LOCK_TIMEOUT <= took < 2 * LOCK_TIMEOUT, (refused.text, took)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "database_busy"
        assert "cannot take the write lock within 1 s" in refused.json()["message"]

        # More senders than the web threads (2 workers x 4): each is answered within its bound, so /healthz,
        # asked while they wait, still gets a thread.
        with ThreadPoolExecutor(max_workers=12) as pool:
            burst = [pool.submit(timed, lambda i=i: bridge.post("/webhooks/datadog", alert(f"burst-{i}", "300")))
                     for i in range(10)]
            time.sleep(0.2)
            health, health_took = timed(lambda: httpx2.get(f"{bridge.url}/healthz", timeout=10.0))
            answers = [f.result() for f in burst]
        assert health.status_code == 200 and health_took < 3 * LOCK_TIMEOUT, health_took
        assert {a.status_code for a, _ in answers} == {503}
        assert max(took for _, took in answers) < 3 * LOCK_TIMEOUT  # two rounds of 1 s at most, never a queue

        ready, took = timed(lambda: httpx2.get(f"{bridge.url}/readyz", timeout=10.0))
        assert ready.status_code == 503 and took < 2 * LOCK_TIMEOUT
        assert ready.json()["problems"] == ["database: cannot take the write lock within 1 s"]
        assert httpx2.get(f"{bridge.url}/healthz", timeout=10.0).status_code == 200

    wait_for(lambda: httpx2.get(f"{bridge.url}/readyz", timeout=10.0).status_code == 200, timeout=10)
    retried = bridge.post("/webhooks/datadog", alert("during", "200"))  # the sender's retry
    assert retried.status_code == 202
    during_key = retried.json()["alerts"][0]["dedup_key"]

    bridge.wait_decided()
    stored = bridge.get("/api/v1/alerts").json()["alerts"]
    assert sorted(a["source_event_id"] for a in stored) == ["before", "during"]  # the refused burst was not kept
    assert wait_for(lambda: pagerduty.triggers_for(before_key) and pagerduty.triggers_for(during_key))
    assert len(pagerduty.triggers_for(before_key)) == 1 and len(pagerduty.triggers_for(during_key)) == 1


def cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = bridge_env(tmp_path, BRIDGE_DB_LOCK_TIMEOUT=str(LOCK_TIMEOUT))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bridge", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    return done, time.monotonic() - started


def test_the_cli_reads_silences_at_once_and_a_write_says_the_database_is_busy(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path / 'bridge.db'}").engine.dispose()  # a database with its schema
    with DatabaseHolder(tmp_path / "bridge.db"):
        listed, took = cli(tmp_path, "silence", "list")
        assert listed.returncode == 0 and listed.stdout.strip() == "no silences", listed.stderr
        assert took < 10 * LOCK_TIMEOUT  # an interpreter's start-up; it used to wait for the lock, forever
        added, took = cli(tmp_path, "silence", "add", "-m", "service=checkout", "--owner", "ops", "--reason",
                          "maintenance", "--duration", "1h")
    assert added.returncode != 0 and "the database is busy" in added.stderr and "Traceback" not in added.stderr
    assert took < 10 * LOCK_TIMEOUT
    assert cli(tmp_path, "silence", "list")[0].stdout.strip() == "no silences"
