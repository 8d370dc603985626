"""A PostgreSQL database another session holds locks on: a receipt and an admin write give up at the store's
`lock_timeout` with DatabaseBusy (503 for a request) and write nothing; the readiness write probe tells a server
that takes writes from one that refuses them (a read-only database, a standby)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from bridge.errors import DatabaseBusy
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.store import Store
from bridge.store.engine import create_engine
from bridge.store.schema import JOURNAL_LOCK
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BUDGET = 1.0
SLACK = 0.5


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database() as fresh:
        yield fresh


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = Store.open(url, lock_timeout=BUDGET)
    opened.journal([page("before")], [], T0)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def other(url: str) -> Iterator[sa.Connection]:
    """Another session (another replica, an operator's psql)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def page(event_id: str) -> tuple[Alert, Decision]:
    alert = Alert(source="datadog", source_event_id=event_id, received_at=T0, title="disk full",
                  state=AlertState.FIRING, group_key="g1")
    return alert, Decision(action=Action.PAGE, severity=Severity.P1, rule="disk")


def test_a_receipt_gives_up_at_the_lock_timeout(store: Store, other: sa.Connection) -> None:
    # Held exclusively, the journal's lock keeps out every receipt (each takes it shared).
    other.execute(sa.select(sa.func.pg_advisory_lock(JOURNAL_LOCK)))
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as raised:
            store.journal([page("during")], [], T0)
        waited = time.monotonic() - started
    finally:
        other.execute(sa.select(sa.func.pg_advisory_unlock(JOURNAL_LOCK)))
    assert BUDGET <= waited < BUDGET + SLACK
    assert raised.value.status == 503 and raised.value.code == "database_busy"
    store.journal([page("after")], [], T0)
    assert [a["source_event_id"] for a in store.list_alerts()] == ["after", "before"]


def test_an_admin_write_gives_up_at_the_lock_timeout_and_reads_go_on(store: Store, other: sa.Connection) -> None:
    with other.begin():
        other.execute(sa.text("LOCK TABLE silences IN EXCLUSIVE MODE"))  # writes wait; reads do not
        started = time.monotonic()
        with pytest.raises(DatabaseBusy):
            store.add_silence({"matchers": []}, "ops", "maintenance", 2e9, time.time(), actor="test")
        assert BUDGET <= time.monotonic() - started < BUDGET + SLACK
        assert store.list_silences(include_expired=True) == []
    assert store.list_audit() == []


def test_the_write_probe_tells_a_read_only_database(store: Store, url: str) -> None:
    assert store.write_problem(1.0) is None
    read_only = Store(create_engine(f"{url}?options={quote('-c default_transaction_read_only=on')}"))
    try:
        read_only.ping()  # it answers...
        assert read_only.write_problem(1.0) == ("read-only: the server refuses writes "
                                                "(default_transaction_read_only)")  # ...but takes no writes
    finally:
        read_only.engine.dispose()
