"""A database another writer holds: reads go on, writes give up within their budget (`Store.lock_timeout`) with
`DatabaseBusy` and write nothing, and the readiness probe says so without waiting longer than it was told."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import DatabaseBusy
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.store import Store
from tests.support.dblock import DatabaseHolder

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BUDGET = 0.5
# What a wait may overrun its budget by on a busy 2-core machine (a poll, a scheduler slice).
SLACK = 0.4


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bridge.db"


@pytest.fixture
def store(db: Path) -> Store:
    opened = Store.open(f"sqlite:///{db}", lock_timeout=BUDGET)
    opened.journal([page("before")], [], T0)
    return opened


def page(event_id: str) -> tuple[Alert, Decision]:
    alert = Alert(source="datadog", source_event_id=event_id, received_at=T0, title="disk full",
                  state=AlertState.FIRING, group_key="g1")
    return alert, Decision(action=Action.PAGE, severity=Severity.P1, rule="disk")


def stored_ids(store: Store) -> list[str]:
    return [a["source_event_id"] for a in store.list_alerts()]


HELD = {"the writer lock (another bridge process)": {"sqlite_lock": False},
        "SQLite's write lock (a sqlite3 shell)": {"writer_lock": False},
        "both": {}}


@pytest.mark.parametrize("held", list(HELD.values()), ids=list(HELD))
@pytest.mark.parametrize("write", ["receipt", "transaction"])
def test_a_write_gives_up_within_its_budget_and_writes_nothing(store: Store, db: Path, held: dict[str, bool],
                                                                write: str) -> None:
    with DatabaseHolder(db, **held):
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as raised:
            if write == "receipt":
                store.journal([page("during")], [], T0)  # the receipt's own path (driver connection)
            else:
                store.add_silence({"matchers": []}, "ops", "maintenance", 2e9, time.time(), actor="test")
        waited = time.monotonic() - started
    assert BUDGET <= waited < BUDGET + SLACK
    assert raised.value.status == 503 and raised.value.retry_after_seconds == 1
    assert f"cannot take the write lock within {BUDGET:g} s" in raised.value.message
    assert stored_ids(store) == ["before"] and store.list_silences(include_expired=True) == []
    # Released: the same write goes through (and the connection's busy timeout is whole again).
    store.journal([page("after")], [], T0)
    assert stored_ids(store) == ["after", "before"]


def test_the_writer_lock_and_sqlites_busy_wait_share_one_budget(store: Store, db: Path) -> None:
    with DatabaseHolder(db) as holder:
        # The writer lock frees after most of the budget; SQLite's lock stays: what is left is all SQLite waits.
        threading.Timer(BUDGET * 0.7, holder.release_writer_lock).start()
        started = time.monotonic()
        with pytest.raises(DatabaseBusy):
            store.journal([page("during")], [], T0)
        waited = time.monotonic() - started
    assert BUDGET <= waited < BUDGET + SLACK


def test_a_write_waits_for_a_lock_freed_within_its_budget(store: Store, db: Path) -> None:
    with DatabaseHolder(db) as holder:
        threading.Timer(BUDGET / 2, holder.release).start()
        store.journal([page("during")], [], T0)
    assert stored_ids(store) == ["during", "before"]


def test_reads_never_wait_for_the_write_lock(store: Store, db: Path) -> None:
    with DatabaseHolder(db):
        started = time.monotonic()
        assert stored_ids(store) == ["before"]
        assert store.list_silences(include_expired=True) == []
        assert store.list_incidents(limit=10) == []
        assert store.journal_status()["undecided"] == 1
        assert store.get_alert(1) is not None
        assert store.list_jobs() == [] and store.job_counts() == {}
        assert store.list_audit() == [] and store.list_notices() == []
        assert store.reload_status()["last_reload_ok"] is None
        assert time.monotonic() - started < 0.2


def test_a_store_opens_without_the_write_lock_when_its_schema_is_whole(store: Store, db: Path) -> None:
    with DatabaseHolder(db):
        started = time.monotonic()
        again = Store.open(f"sqlite:///{db}", lock_timeout=BUDGET)  # what a web worker does when it (re)starts
        assert time.monotonic() - started < BUDGET
    assert stored_ids(again) == ["before"]


def test_the_write_probe_names_the_problem_within_its_own_timeout(store: Store, db: Path) -> None:
    assert store.write_problem(0.2) is None
    with DatabaseHolder(db, writer_lock=False):
        started = time.monotonic()
        assert store.write_problem(0.2) == "cannot take the write lock within 0.2 s"
        assert 0.2 <= time.monotonic() - started < 0.2 + SLACK
    with DatabaseHolder(db, sqlite_lock=False):
        assert store.write_problem(0.2) == "cannot take the write lock within 0.2 s"
    assert store.write_problem(0.2) is None
    assert stored_ids(store) == ["before"]  # the probe wrote nothing


def test_a_longer_wait_is_for_its_block_only(store: Store, db: Path) -> None:
    with DatabaseHolder(db) as holder:
        threading.Timer(BUDGET * 2, holder.release).start()
        with store.waiting_longer(BUDGET * 6):
            store.journal([page("start-up")], [], T0)  # waits past the request budget, for the lock to free
    assert store.lock_timeout == BUDGET
    assert stored_ids(store) == ["start-up", "before"]
