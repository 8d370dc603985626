"""Schema migrations, on SQLite and PostgreSQL.

- The revisions, run from an empty database, reach exactly `bridge.store.schema.metadata` (Alembic's
  compare_metadata finds no difference): when this fails, the schema changed without a revision (see the
  `bridge.store` docstring for how to add one).
- A database made by the bridge before the journal redesign (`data/prejournal.sql`, dumped from that code really run)
  is recognised, stamped and upgraded, and keeps its alerts, incidents, silences, jobs and the rest: today's store
  reads them (an incident by its dedup key, the alerts listed, the silence still suppressing a matching alert) and
  journals and decides new alerts on it. On PostgreSQL the old tables are created from the baseline's frozen copy of
  that code's metadata and filled with the same rows.
- Databases left by the bridges between the baseline and the migrations (columns and indexes added at start, some
  in part) are recognised at the right revision; a schema ahead of this code, or behind it, is refused by
  `Store.open` unless it is told to upgrade; the revisions go down to the baseline and up again.

The PostgreSQL cases get a database of their own (`tests/support/postgres.py`); without a server they skip, and
under CI=true they fail.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import PipelineStage
from bridge.rules.loader import compile_sources
from bridge.store import Store, migrations
from bridge.store.engine import SchemaAhead, SchemaBehind, create_engine
from bridge.store.migrations import baseline
from bridge.store.schema import metadata
from tests.support.postgres import fresh_database
from tests.support.prejournal import PREJOURNAL_SQL, load_prejournal

NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset
# The fixture's open incident of the Datadog example 02, and the group of its silenced payments-api alert.
OPEN_GROUP = "datadog:cycle:0a6e2b9d4c1f48a3b7e5d2c9f8a1b6e4"
RESOLVED_GROUP = "datadog:cycle:c8d1f3a09b5e4e27a6f2d0b4e91c7a35"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    with fresh_database() as url:
        yield url


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every baseline table, in the baseline's columns, by id."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = {t.name: [tuple(r) for r in conn.execute(sa.select(*t.columns).order_by(t.c.id))]
               for t in baseline.metadata.sorted_tables}
    engine.dispose()
    return out


def differences(url: str) -> list[Any]:
    """What Alembic's autogenerate finds between the database and `metadata` (types compared too)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    return list(found)


def run_revisions(url: str, target: str = "head") -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), target)
    engine.dispose()


def test_the_revisions_reach_the_schema_of_the_code(empty_url: str) -> None:
    run_revisions(empty_url)
    assert differences(empty_url) == [], "bridge/store/schema.py changed without a revision: add one"


def test_a_new_database_is_created_at_head_and_equals_the_revisions(empty_url: str) -> None:
    store = Store.open(empty_url)
    state = store.schema_status()
    store.engine.dispose()
    assert (state.current, state.at_head, state.legacy) == (migrations.head(), True, False)
    assert differences(empty_url) == []


def test_a_prejournal_database_is_upgraded_and_keeps_its_data(empty_url: str) -> None:
    load_prejournal(empty_url)
    before = snapshot(empty_url)
    assert {t: len(rows) for t, rows in before.items() if rows} == {
        "alerts": 7, "incidents": 4, "silences": 1, "jobs": 10, "timeline": 17, "audit": 1, "rulesets": 2,
        "incident_members": 4}

    with pytest.raises(SchemaBehind, match="revision 0001 .recognised from its tables"):
        Store.open(empty_url)  # an explicit database is upgraded by `db upgrade` only
    store = Store.open(empty_url, upgrade=True)

    assert store.schema_status().at_head
    assert snapshot(empty_url) == before
    assert differences(empty_url) == []
    # Alerts decided at receipt are not the pipeline's to decide: none is undecided.
    assert store.journal_status()["undecided"] == 0
    listed = store.list_alerts()
    assert [(a["id"], a["outcome"], a["incident_id"]) for a in listed] == [
        (7, "resolved", 1), (6, "opened", 4), (5, "opened", 3), (4, "suppressed", None), (3, "recorded", None),
        (2, "opened", 2), (1, "opened", 1)]
    found = store.find_incident(OPEN_GROUP)
    assert found is not None and (found["id"], found["status"]) == (2, "open")
    resolved = store.find_incident(RESOLVED_GROUP)
    assert resolved is not None and resolved["status"] == "resolved"
    [silence] = store.list_silences(include_expired=True)
    assert silence["owner"] == "alice@example.com"

    # New alerts, as of an hour into the silence: journaled and decided by today's pipeline.
    at = datetime.fromtimestamp(silence["created_at"] + 3600, UTC)
    answers = store.journal([page("new-1", "datadog:cycle:new-payments", "payments-api", at),
                             page("new-2", OPEN_GROUP, "checkout", at),
                             page("new-3", "datadog:cycle:new-checkout", "checkout", at)], [], at)
    assert PipelineStage(store, lambda: NO_STORMS).drain() == 3
    outcomes = [store.accepted(a.alert_id) for a in answers]
    assert outcomes[0].outcome == "suppressed" and outcomes[0].incident_id is None  # the old silence applies
    assert outcomes[1].incident_id == 2  # the old open incident takes its group's new alert
    assert outcomes[2].outcome == "opened" and outcomes[2].incident_id == 5  # ids go on after the old rows
    assert any(j["kind"] == "event" and j["incident_id"] == 5 for j in store.list_jobs())
    store.engine.dispose()


def page(event_id: str, group: str, service: str, at: datetime) -> tuple[Alert, Decision]:
    alert = Alert(source="datadog", source_event_id=event_id, received_at=at, title=f"[P1] errors on {service}",
                  state=AlertState.FIRING, group_key=group, service=service, fields={"monitor_id": "183664512"})
    return alert, Decision(action=Action.PAGE, severity=Severity.P1, rule="datadog-monitor",
                           reasons=("rule datadog-monitor matched",), urgency=Severity.P1.urgency)


def shape_prejournal(conn: sqlite3.Connection, url: str) -> None:
    conn.executescript(PREJOURNAL_SQL.read_text(encoding="utf-8"))


def shape_before_internal_failures(conn: sqlite3.Connection, url: str) -> None:
    # Older than the baseline: before commit ae6b5e8 there was no audit table and no jobs.internal_failures.
    shape_prejournal(conn, url)
    conn.executescript("ALTER TABLE jobs DROP COLUMN internal_failures; DROP TABLE audit;")


def shape_journal_columns_added_at_start(conn: sqlite3.Connection, url: str) -> None:
    # What the bridge of b069dcd did to a pre-journal database at start: its ADDED_COLUMNS, no index.
    shape_prejournal(conn, url)
    conn.executescript("ALTER TABLE jobs ADD COLUMN dedupe VARCHAR(255); "
                       "ALTER TABLE alerts ADD COLUMN journaled_at FLOAT DEFAULT 0; "
                       "ALTER TABLE alerts ADD COLUMN decided_at FLOAT DEFAULT 0;")


def shape_at(revision: str) -> Any:
    def shape(conn: sqlite3.Connection, url: str) -> None:
        # A database the bridge of that revision made, with the table the migrations keep their revision in gone.
        shape_prejournal(conn, url)
        conn.commit()
        run_revisions(url, revision)
        conn.execute("DROP TABLE alembic_version")

    return shape


@pytest.mark.parametrize(("shape", "recognised"), [
    pytest.param(shape_prejournal, "0001", id="before the journal"),
    pytest.param(shape_before_internal_failures, "0001", id="before the baseline"),
    pytest.param(shape_journal_columns_added_at_start, "0001", id="journal columns added at start, no index"),
    pytest.param(shape_at("0002"), "0002", id="the journal with its indexes"),
    pytest.param(shape_at("0003"), "0003", id="every index: today's tables"),
])
def test_a_database_from_before_migrations_is_recognised_and_upgraded(tmp_path: Path, shape: Any,
                                                                     recognised: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with sqlite3.connect(tmp_path / "old.db") as conn:
        shape(conn, url)
    store = Store.connect(url)
    state = store.schema_status()
    assert (state.current, state.legacy, state.at_head) == (recognised, True, False)
    before, after = store.upgrade_schema()
    assert (before.current, after.current, after.at_head) == (recognised, migrations.head(), True)
    assert differences(url) == []
    assert len(store.list_alerts()) == 7 and len(store.list_silences(include_expired=True)) == 1
    assert [j["internal_failures"] for j in store.list_jobs()] == [0] * 10
    assert store.upgrade_schema()[0].at_head  # again: nothing to do
    store.engine.dispose()


def test_a_schema_ahead_of_this_bridge_is_refused(empty_url: str) -> None:
    Store.open(empty_url).engine.dispose()
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:  # as a newer bridge's `db upgrade` leaves it
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for opening in (lambda: Store.open(empty_url, upgrade=True), lambda: Store.open_existing(empty_url),
                    lambda: Store.connect(empty_url).upgrade_schema()):
        with pytest.raises(SchemaAhead, match="has schema revision 9999, newer than this incident-bridge knows "
                                              rf"\(its newest is {migrations.head()}\)"):
            opening()


def test_a_schema_behind_is_refused_unless_upgrading(empty_url: str) -> None:
    run_revisions(empty_url, "0002")
    with pytest.raises(SchemaBehind,
                       match=f"has schema revision 0002, older than this incident-bridge's {migrations.head()}"):
        Store.open(empty_url)
    with pytest.raises(SchemaBehind, match="run `incident-bridge db upgrade`"):
        Store.open_existing(empty_url)
    store = Store.open(empty_url, upgrade=True)
    assert store.schema_status().at_head
    store.engine.dispose()


def test_processes_upgrading_at_once_upgrade_once(empty_url: str) -> None:
    load_prejournal(empty_url)
    stores = [Store.connect(empty_url) for _ in range(3)]
    results: list[tuple[migrations.SchemaStatus, migrations.SchemaStatus]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.upgrade_schema())) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(before.current or "" for before, _after in results) == ["0001", migrations.head(), migrations.head()]
    assert all(after.at_head for _before, after in results)
    assert differences(empty_url) == []
    for s in stores:
        s.engine.dispose()


def test_the_legacy_marks_name_objects_of_their_revisions() -> None:
    # LEGACY_MARKS recognises a revision by columns and indexes; each must exist in today's schema, in the order
    # of the revisions (else a database of that time would be stamped wrong).
    revisions = [r.revision for r in reversed(list(migrations.script().walk_revisions()))]
    assert [mark[0] for mark in migrations.LEGACY_MARKS] == revisions[1:len(migrations.LEGACY_MARKS) + 1]
    for _revision, columns, indexes in migrations.LEGACY_MARKS:
        for table, column in columns:
            assert column in metadata.tables[table].c
        for table, index in indexes:
            assert index in {i.name for i in metadata.tables[table].indexes}


def test_the_revisions_go_down_to_the_baseline_and_up_again(empty_url: str) -> None:
    load_prejournal(empty_url)
    before = snapshot(empty_url)
    Store.connect(empty_url).upgrade_schema()
    engine = create_engine(empty_url)
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0001")
    with engine.connect() as conn:
        assert "journaled_at" not in {c["name"] for c in sa.inspect(conn).get_columns("alerts")}
    engine.dispose()
    assert snapshot(empty_url) == before  # down to the baseline, its rows as they were
    run_revisions(empty_url)
    assert differences(empty_url) == []
