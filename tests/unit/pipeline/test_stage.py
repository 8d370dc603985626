"""The journal and the pipeline stage: receipt appends only; the stage decides in order, in batches, the same way
when a batch is redone, and sets aside what it cannot decide instead of stalling on it."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.silences.admin import create_silence, expire_silence, list_silences
from bridge.pipeline.stage import PipelineStage, accept_and_decide
from bridge.pipeline.wake import Doorbell, SocketListener, doorbell_address, listener_for
from bridge.rules.loader import compile_sources
from bridge.rules.model import DEFAULT_STORM_THRESHOLD
from bridge.store import FAILED, PENDING, Store, alerts, incidents, jobs
from bridge.store.schema import silences

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'journal.db'}")


def page(event_id: str, group: str, *, monitor: str = "m1", host: str = "",
         state: AlertState = AlertState.FIRING, severity: Severity = Severity.P1) -> tuple[Alert, Decision]:
    fields = {"monitor_id": monitor}
    if host:
        fields["hostname"] = host
    alert = Alert(source="datadog", source_event_id=event_id, received_at=T0, title=f"disk full on {host or group}",
                  state=state, group_key=group, fields=fields)
    action = Action.RESOLVE if state is AlertState.RESOLVED else Action.PAGE
    return alert, Decision(action=action, severity=severity, rule="disk", reasons=("rule disk matched",),
                           urgency=severity.urgency)


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_receipt_journals_only_and_the_stage_decides_after(store: Store) -> None:
    [answer] = store.journal([page("e1", "g1")], [], T0)
    assert (answer.outcome, answer.incident_id, answer.severity, answer.dedup_key) == (PENDING, None, "P1", "g1")
    assert (count(store, incidents), count(store, jobs)) == (0, 0)
    assert store.journal_status()["undecided"] == 1

    decided = PipelineStage(store, lambda: NO_STORMS).drain()

    assert decided == 1
    assert store.journal_status()["undecided"] == 0
    final = store.accepted(answer.alert_id)
    assert final.outcome == "opened" and final.incident_id is not None
    assert [j["kind"] for j in store.list_jobs()] == ["event"]


def test_a_repeat_is_absorbed_by_the_unique_key_and_answers_with_the_stored_entry(store: Store) -> None:
    [first] = store.journal([page("e1", "g1")], [], T0)
    [again] = store.journal([page("e1", "g1")], [], T0)
    assert again.duplicate and again.alert_id == first.alert_id and again.outcome == PENDING
    PipelineStage(store, lambda: NO_STORMS).drain()
    [later] = store.journal([page("e1", "g1")], [], T0)
    assert later.duplicate and later.outcome == "opened"
    assert count(store, alerts) == 1


def test_entries_are_decided_in_order_across_batches(store: Store) -> None:
    # Trigger, recovery, trigger of one group, split over batches of 2: order decides the outcomes.
    for i, state in enumerate([AlertState.FIRING, AlertState.RESOLVED, AlertState.FIRING]):
        store.journal([page(f"e{i}", "g1", state=state)], [], T0 + timedelta(seconds=i))
    stage = PipelineStage(store, lambda: NO_STORMS, batch_size=2)
    assert stage.drain() == 3
    outcomes = [store.accepted(i).outcome for i in (1, 2, 3)]
    assert outcomes == ["opened", "resolved_before_page", "opened"]


def test_a_batch_rolled_back_mid_way_is_decided_the_same_when_redone(store: Store, tmp_path: Path) -> None:
    batch = [page(f"e{i}", f"g{i % 3}") for i in range(9)]
    store.journal(batch, [], T0)
    other = Store.open(f"sqlite:///{tmp_path / 'reference.db'}")
    other.journal(batch, [], T0)
    PipelineStage(other, lambda: NO_STORMS).drain()

    class Crash(Exception):
        pass

    # The stage dies after deciding 5 entries of the batch: nothing of it is committed.
    from bridge.pipeline import stage as stage_module

    real = stage_module.decide_entry
    calls = {"n": 0}

    def dying(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            raise Crash()
        real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(Crash), store.pipeline_batch(100) as b:
        for entry in b.entries():
            dying(b, entry, NO_STORMS.settings, {}, [])
    assert store.journal_status()["undecided"] == 9 and count(store, incidents) == 0

    PipelineStage(store, lambda: NO_STORMS).drain()

    def summary(s: Store) -> list[tuple[object, ...]]:
        with s.engine.connect() as conn:
            rows = conn.execute(sa.select(alerts.c.id, alerts.c.outcome, alerts.c.incident_id)
                                .order_by(alerts.c.id)).all()
            jobs_ = conn.execute(sa.select(jobs.c.kind, jobs.c.dedup_key, jobs.c.action, jobs.c.next_attempt_at)
                                 .order_by(jobs.c.id)).all()
        return [tuple(r) for r in rows] + [tuple(j) for j in jobs_]

    assert summary(store) == summary(other)


def test_an_entry_that_cannot_be_decided_is_set_aside_and_the_rest_go_on(store: Store,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    store.journal([page("e1", "g1"), page("e2", "g2"), page("e3", "g3")], [], T0)
    with store.engine.begin() as conn:  # a row the stage cannot read back (say, written by a buggy version)
        conn.execute(alerts.update().where(alerts.c.source_event_id == "e2").values(decision_json="{}"))
    stage = PipelineStage(store, lambda: NO_STORMS)
    while store.journal_status()["undecided"]:
        assert stage.run_once() > 0
    assert [store.accepted(i).outcome for i in (1, 2, 3)] == ["opened", FAILED, "opened"]
    assert "alert 2 cannot be decided; set aside as failed" in caplog.text


def test_a_monitor_firing_on_many_hosts_pages_at_most_the_storm_threshold(store: Store) -> None:
    # Five monitors across 40 hosts each, 4 alerts per host: the default storm threshold (2) pages 10 times.
    ruleset = compile_sources([("empty.yaml", "rules: []\n")]).ruleset
    assert ruleset.settings.storm_threshold == DEFAULT_STORM_THRESHOLD == 2
    alerts_ = [page(f"m{m}-h{h}-{r}", f"m{m}:host-{h}", monitor=f"m{m}", host=f"host-{h}")
               for r in range(4) for m in range(5) for h in range(40)]
    store.journal(alerts_, [], T0)
    PipelineStage(store, lambda: ruleset).drain()
    triggers = [j for j in store.list_jobs(limit=10000) if j["kind"] == "event" and j["action"] == "trigger"]
    assert len(triggers) == 10
    assert count(store, incidents) == 10
    digests = [j for j in store.list_jobs(limit=10000) if j["kind"] == "storm_digest"]
    assert len(digests) == 5  # one per storm (monitor), each summarising its hosts


def test_the_doorbell_wakes_a_listener_on_the_same_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    address = doorbell_address(url)
    assert address is not None and address.startswith("\0")
    assert doorbell_address(f"sqlite:///{tmp_path / 'b.db'}") != address
    listener = SocketListener(address)
    try:
        assert listener.wait(0.01) is False
        threading.Timer(0.05, Doorbell(url).ring).start()
        started = time.monotonic()
        assert listener.wait(5.0) is True
        assert time.monotonic() - started < 2.0
        # A second stage on the same database cannot bind: it polls instead (and says so).
        second = listener_for(sa.create_engine(url), url, "unused")
        assert type(second).__name__ == "PollListener"
        second.close()
    finally:
        listener.close()


def test_ringing_with_nobody_listening_never_fails(tmp_path: Path) -> None:
    Doorbell(f"sqlite:///{tmp_path / 'nobody.db'}").ring()
    Doorbell("postgresql+psycopg://u@127.0.0.1/db").ring()  # no doorbell: PostgreSQL notifies in SQL


def test_accept_and_decide_returns_final_outcomes(store: Store) -> None:
    [opened] = accept_and_decide(store, [page("e1", "g1")], [], T0, NO_STORMS)
    [resolved] = accept_and_decide(store, [page("e2", "g1", state=AlertState.RESOLVED)], [], T0, NO_STORMS)
    assert (opened.outcome, resolved.outcome) == ("opened", "resolved_before_page")


def test_a_stored_silence_re2_refuses_is_not_applied_and_logged_once(store: Store,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # Stored before the move to RE2, when Python's re ran the lookahead: it would have silenced g1. It must not
    # stop the stage, nor the silences that still work (g2's).
    made = T0 - timedelta(minutes=1)
    create_silence(store, {"matchers": ["title=~on g2$"], "owner": "bob", "reason": "g2 drill", "duration": "2h"},
                   made, actor="test")
    spec = create_silence(store, {"matchers": ["title=~^disk"], "owner": "alice", "reason": "g1 drill",
                                  "duration": "2h"}, made, actor="test")
    old_spec = {**spec, "matchers": ['title=~"^disk full(?= on g1)"']}
    with store.engine.begin() as conn:
        conn.execute(silences.update().where(silences.c.id == spec["id"]).values(spec_json=json.dumps(old_spec)))
    store.journal([page("e1", "g1")], [], T0)
    store.journal([page("e2", "g2")], [], T0)

    assert PipelineStage(store, lambda: NO_STORMS, batch_size=1).drain() == 2

    assert [store.accepted(i).outcome for i in (1, 2)] == ["opened", "suppressed"]
    refused = [r.getMessage() for r in caplog.records if "is not applied" in r.getMessage()]
    assert refused == [f"silence {spec['id']} (alice) is not applied: invalid regular expression "
                       "'^disk full(?= on g1)' for title: lookahead (?=...) is not supported (RE2 syntax) (fix: "
                       "match the text itself, or move what must not be there into a separate condition (not_regex "
                       "in rules, !~ in silences)); expire it and add it again in RE2 syntax"]
    listed = {s["id"]: s for s in list_silences(store, T0)}
    assert listed[spec["id"]]["status"] == "refused" and "lookahead" in listed[spec["id"]]["refused"]
    assert expire_silence(store, spec["id"], T0, actor="test")["status"] == "expired"
