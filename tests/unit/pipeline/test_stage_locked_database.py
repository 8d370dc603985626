"""The pipeline stage while another writer holds the database: it does not crash, does not set the entries aside
as undecidable (a locked database is not a bad entry), and decides them once the database is free."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import DatabaseBusy
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import PipelineStage
from bridge.rules.loader import compile_sources
from bridge.store import PENDING, Store
from tests.support.dblock import DatabaseHolder

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset


def page(event_id: str) -> tuple[Alert, Decision]:
    alert = Alert(source="datadog", source_event_id=event_id, received_at=T0, title="disk full",
                  state=AlertState.FIRING, group_key=f"g-{event_id}")
    return alert, Decision(action=Action.PAGE, severity=Severity.P1, rule="disk")


def outcomes(store: Store) -> list[str]:
    return [a["outcome"] for a in store.list_alerts()]


def test_a_batch_that_cannot_take_the_lock_leaves_its_entries_pending(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{db}", lock_timeout=0.2)
    store.journal([page("e1"), page("e2")], [], T0)
    stage = PipelineStage(store, lambda: NO_STORMS, batch_seconds=None)
    with DatabaseHolder(db), pytest.raises(DatabaseBusy):
        stage.run_once()
    assert outcomes(store) == [PENDING, PENDING]  # not "failed": nothing is wrong with them
    assert stage.drain() == 2
    assert outcomes(store) == ["opened", "opened"]


def test_the_running_stage_rides_out_a_locked_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{db}", lock_timeout=0.2)
    store.journal([page("e1")], [], T0)
    stage = PipelineStage(store, lambda: NO_STORMS)
    runner = threading.Thread(target=stage.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="bridge.pipeline.stage"), DatabaseHolder(db):
        runner.start()
        time.sleep(1.0)  # the stage finds the database held, more than once
        assert runner.is_alive() and outcomes(store) == [PENDING]
    try:
        deadline = time.monotonic() + 10
        while outcomes(store) != ["opened"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcomes(store) == ["opened"]
        assert any("database is busy" in r.getMessage() for r in caplog.records)
        assert not any(r.exc_info for r in caplog.records)  # a warning, not a traceback
    finally:
        stage.stop()
        runner.join(10)
