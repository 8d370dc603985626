"""Heartbeats: which are missed at a time (pure, as tables), how the engine and the policy treat a beat, and the
whole loop on a real SQLite store: the watch journals a page for a silence, the stage opens the incident and
queues its trigger, a beat (silenced or not) resolves it, and neither a restart nor a second look pages twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.model import Action, Alert, AlertState
from bridge.pipeline.heartbeats import (
    HeartbeatRecord,
    HeartbeatState,
    HeartbeatWatch,
    assess,
    status_of,
)
from bridge.pipeline.policy import PolicyContext, plan
from bridge.pipeline.silences.admin import create_silence
from bridge.pipeline.stage import PipelineStage
from bridge.rules.engine import evaluate
from bridge.rules.loader import compile_sources
from bridge.rules.model import Ruleset
from bridge.store import Store, incidents, jobs
from bridge.store.schema import heartbeats

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()

RULES = """
version: 1
paging:
  P1: {roles: [Incident Coordinator]}
  P2: {roles: []}
roles:
  Incident Coordinator: {duties: runs the incident}
settings: {storm_threshold: 0}
rules:
  - name: alertmanager-severity
    match: {source: alertmanager, alertname: {not_equals: Watchdog}}
    severity: P2
heartbeats:
  - name: watchdog
    match: {source: alertmanager, alertname: Watchdog}
    every: 5m
    service: monitoring
  - name: datadog-canary
    match: {source: datadog, monitor_id: "42"}
    every: 10m
    severity: P2
"""


def ruleset(text: str = RULES) -> Ruleset:
    return compile_sources([("rules.yaml", text)]).ruleset


RULESET = ruleset()
WATCHDOG = RULESET.heartbeats[0]


def am_alert(event_id: str, alertname: str = "Watchdog", *, at: float = T0,
             state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(source="alertmanager", source_event_id=event_id, received_at=datetime.fromtimestamp(at, UTC),
                 title=alertname, state=state, group_key=f"alertmanager:{alertname}", fields={"alertname": alertname})


# -- which heartbeats are missed at `now` (pure) -------------------------------------------------------------------

@pytest.mark.parametrize(("record", "now", "state", "since", "due"), [
    (None, T0, HeartbeatState.WAITING, T0, T0 + 300),
    (HeartbeatRecord("watchdog", T0), T0 + 299, HeartbeatState.WAITING, T0, T0 + 300),
    (HeartbeatRecord("watchdog", T0), T0 + 300, HeartbeatState.WAITING, T0, T0 + 300),
    (HeartbeatRecord("watchdog", T0), T0 + 301, HeartbeatState.MISSED, T0, T0 + 300),
    (HeartbeatRecord("watchdog", T0, T0 + 100, 7), T0 + 350, HeartbeatState.OK, T0 + 100, T0 + 400),
    (HeartbeatRecord("watchdog", T0, T0 + 100, 7), T0 + 400, HeartbeatState.OK, T0 + 100, T0 + 400),
    (HeartbeatRecord("watchdog", T0, T0 + 100, 7), T0 + 401, HeartbeatState.MISSED, T0 + 100, T0 + 400),
    # A beat recorded before the watch started (the stage saw it first) still counts from the beat.
    (HeartbeatRecord("watchdog", T0 + 50, T0 + 10, 7), T0 + 200, HeartbeatState.OK, T0 + 10, T0 + 310),
], ids=["never-watched", "first-interval", "due-exactly", "never-seen-overdue", "seen-recently", "seen-due-exactly",
        "seen-overdue", "beat-before-watch"])
def test_status_at_a_time(record: HeartbeatRecord | None, now: float, state: HeartbeatState, since: float,
                          due: float) -> None:
    status = status_of(WATCHDOG, record, now)
    assert (status.state, status.since, status.due_at) == (state, since, due)


SEEN = {"watchdog": HeartbeatRecord("watchdog", T0, T0 + 100, 1),
        "datadog-canary": HeartbeatRecord("datadog-canary", T0, T0 + 100, 2)}


@pytest.mark.parametrize(("records", "open_incidents", "now", "expected"), [
    ({}, {}, T0, []),
    (SEEN, {}, T0 + 399, []),
    (SEEN, {}, T0 + 401, [(f"heartbeat:watchdog:missed:{T0 + 100:.0f}", "firing", "P1")]),
    (SEEN, {}, T0 + 701, [(f"heartbeat:watchdog:missed:{T0 + 100:.0f}", "firing", "P1"),
                          (f"heartbeat:datadog-canary:missed:{T0 + 100:.0f}", "firing", "P2")]),
    (SEEN, {"watchdog": 3}, T0 + 401, []),
    (SEEN, {"watchdog": 3}, T0 + 399, [(f"heartbeat:watchdog:back:{T0 + 100:.0f}", "resolved", None)]),
    ({"watchdog": HeartbeatRecord("watchdog", T0)}, {"watchdog": 3}, T0 + 10,
     [(f"heartbeat:watchdog:back:{T0 + 10:.0f}", "resolved", None)]),
    (SEEN, {"gone": 9}, T0 + 399, [("heartbeat:gone:removed:9", "resolved", None)]),
], ids=["fresh-install", "all-ok", "one-missed", "both-missed-each-severity", "missed-already-open", "back",
        "back-after-rewatch", "removed-from-rules"])
def test_assess(records: dict[str, HeartbeatRecord], open_incidents: dict[str, int], now: float,
                expected: list[tuple[str, str, str | None]]) -> None:
    found = assess(RULESET, records, open_incidents, now)
    assert [(a.source_event_id, a.state.value, d.severity.name if d.severity else None)
            for a, d in found.alerts] == expected
    for alert, decision in found.alerts:
        assert alert.source == "incident-bridge" and alert.group_key.startswith("incident-bridge:heartbeat:")
        assert decision.group_key == alert.group_key and decision.rule == "heartbeat:" + alert.fields["heartbeat"]
        assert decision.action is (Action.PAGE if alert.state is AlertState.FIRING else Action.RESOLVE)


def test_a_missed_heartbeat_says_what_fell_silent_since_when_and_pages_the_roles_of_its_severity() -> None:
    [(alert, decision)] = assess(RULESET, SEEN, {}, T0 + 401).alerts
    assert alert.title == "No alerts from alertmanager (alertname == 'Watchdog') since 2026-12-01 12:01:40 UTC"
    assert alert.service == "monitoring" and alert.group_key == "incident-bridge:heartbeat:watchdog"
    assert "every 5m" in alert.message and "2026-12-01T12:01:40Z" in alert.message
    assert decision.roles == ("Incident Coordinator",) and decision.urgency == "high"
    assert decision.reasons[0] == "heartbeat watchdog (rules.yaml:14) missed"


# -- the engine and the policy ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("alert", "action", "rule", "beats", "outcome"), [
    (am_alert("w1"), Action.RECORD, None, ["watchdog"], "heartbeat"),
    (am_alert("w2", state=AlertState.RESOLVED), Action.RESOLVE, None, ["watchdog"], "nothing_to_resolve"),
    (am_alert("d1", "DiskFull"), Action.PAGE, "alertmanager-severity", None, "opened"),
    (Alert(source="datadog", source_event_id="c1", received_at=datetime.fromtimestamp(T0, UTC), title="canary",
           state=AlertState.FIRING, group_key="dd:42", fields={"monitor_id": "42"}),
     Action.RECORD, None, ["datadog-canary"], "heartbeat"),
], ids=["watchdog-consumed", "watchdog-resolve", "other-alert-untouched", "datadog-monitor"])
def test_the_engine_marks_beats_and_consumes_those_no_rule_matches(alert: Alert, action: Action, rule: str | None,
                                                                    beats: list[str] | None, outcome: str) -> None:
    decision = evaluate(alert, RULESET)
    assert (decision.action, decision.rule, decision.details.get("heartbeats")) == (action, rule, beats)
    assert plan(alert, decision, PolicyContext(), datetime.fromtimestamp(T0, UTC)).outcome == outcome


def test_an_alert_matching_a_rule_and_a_heartbeat_is_decided_by_the_rule_and_still_counts() -> None:
    text = RULES.replace("alertname: {not_equals: Watchdog}", "alertname: {exists: true}")
    decision = evaluate(am_alert("w1"), ruleset(text))
    assert (decision.action, decision.rule, decision.details["heartbeats"]) == (Action.PAGE,
                                                                                "alertmanager-severity", ["watchdog"])


# -- the loop on a real store -----------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'heartbeats.db'}")


def beat(store: Store, event_id: str, at: float, rules: Ruleset = RULESET) -> None:
    """A Watchdog notification received at `at`, decided by the engine, journaled and decided by the stage."""
    alert = am_alert(event_id, at=at)
    store.journal([(alert, evaluate(alert, rules))], [], datetime.fromtimestamp(at, UTC))
    PipelineStage(store, lambda: rules).drain()


def heartbeat_incidents(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(incidents.c.dedup_key, incidents.c.status,
                                                         incidents.c.severity).order_by(incidents.c.id))]


def events(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.dedup_key, jobs.c.action, jobs.c.payload_json)
                            .where(jobs.c.kind == "event").order_by(jobs.c.id)).all()
    return [(r.dedup_key, r.action, json.loads(r.payload_json).get("payload", {}).get("severity", "-"))
            for r in rows]


WATCHDOG_ONLY = ruleset(RULES.split("  - name: datadog-canary")[0])
KEY = "incident-bridge:heartbeat:watchdog"


def test_silence_pages_once_across_restarts_and_a_silenced_beat_resolves_it(tmp_path: Path) -> None:
    silence_pages_once(lambda: Store.open(f"sqlite:///{tmp_path / 'heartbeats.db'}"))


def test_reloads_add_and_remove_heartbeats(store: Store) -> None:
    reloads_add_and_remove(store)


def silence_pages_once(open_store: Callable[[], Store]) -> None:
    """The loop: a page after the first interval, none again on another look or a restart (a second `Store` on the
    same database, as a restarted worker or another replica opens it), a resolve when a silenced beat arrives.
    Run on SQLite here and on PostgreSQL by tests/integration/test_heartbeats_postgres.py."""
    store = open_store()
    clock = Clock(T0)
    watch = HeartbeatWatch(store, lambda: WATCHDOG_ONLY, clock=clock)
    found = watch.check()
    assert found is not None and [s.state for s in found.statuses] == [HeartbeatState.WAITING]
    assert found.alerts == ()

    clock.now = T0 + 301  # nothing arrived in the first interval since the bridge began watching
    found = watch.check()
    assert found is not None and [s.state for s in found.statuses] == [HeartbeatState.MISSED]
    PipelineStage(store, lambda: WATCHDOG_ONLY).drain()
    assert heartbeat_incidents(store) == [(KEY, "open", "P1")]
    assert events(store) == [(KEY, "trigger", "error")]

    # Another look, and a restarted worker (a new store and watch on the same database), page nobody again.
    clock.now = T0 + 400
    assert watch.check() is not None
    restarted = open_store()
    again = HeartbeatWatch(restarted, lambda: WATCHDOG_ONLY, clock=clock).check()
    assert again is not None and again.alerts == () and again.statuses[0].incident_id is not None
    # Even a look that does not see the incident yet (its alert still undecided) journals only a duplicate.
    [answer] = restarted.journal(list(assess(WATCHDOG_ONLY, restarted.heartbeat_records(), {}, clock.now).alerts),
                                 [], datetime.fromtimestamp(clock.now, UTC))
    assert answer.duplicate
    PipelineStage(restarted, lambda: WATCHDOG_ONLY).drain()
    assert heartbeat_incidents(store) == [(KEY, "open", "P1")] and len(events(store)) == 1

    # The page goes out (as the delivery worker records it, which this test does not run).
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.kind == "event").values(state="delivered", attempts=1))

    # The Watchdog returns while an operator silenced Alertmanager: the beat counts all the same.
    create_silence(store, {"matchers": ["source=alertmanager"], "owner": "ops", "reason": "upgrade",
                           "duration": "2h"}, datetime.fromtimestamp(T0 + 410, UTC), actor="test")
    beat(store, "w-back", T0 + 420, WATCHDOG_ONLY)
    assert store.heartbeat_records()["watchdog"].last_seen_at == T0 + 420
    clock.now = T0 + 430
    found = watch.check()
    assert found is not None
    assert [a.source_event_id for a, _ in found.alerts] == [f"heartbeat:watchdog:back:{T0 + 420:.0f}"]
    PipelineStage(store, lambda: WATCHDOG_ONLY).drain()
    assert heartbeat_incidents(store) == [(KEY, "resolved", "P1")]
    assert [e[:2] for e in events(store)] == [(KEY, "trigger"), (KEY, "resolve")]

    # Beats keep coming: nothing more.
    beat(store, "w-next", T0 + 600, WATCHDOG_ONLY)
    clock.now = T0 + 650
    found = watch.check()
    assert found is not None and found.alerts == () and found.statuses[0].state is HeartbeatState.OK


def reloads_add_and_remove(store: Store) -> None:
    """Reloads: a heartbeat added later starts its clock then; one removed while missed resolves its incident and
    loses its record."""
    clock = Clock(T0)
    current = {"rules": ruleset(RULES.split("heartbeats:")[0])}
    watch = HeartbeatWatch(store, lambda: current["rules"], clock=clock)
    assert watch.check() is not None and store.heartbeat_records() == {}

    # Added at T0 + 100: its clock starts then, not at the bridge's start.
    clock.now = T0 + 100
    current["rules"] = WATCHDOG_ONLY
    watch.check()
    assert store.heartbeat_records() == {"watchdog": HeartbeatRecord("watchdog", T0 + 100)}
    clock.now = T0 + 400
    assert watch.check().alerts == ()  # type: ignore[union-attr]
    clock.now = T0 + 401
    watch.check()
    PipelineStage(store, lambda: current["rules"]).drain()
    assert heartbeat_incidents(store) == [(KEY, "open", "P1")]

    # Removed while missed: its incident resolves, its record goes (added again later, it starts afresh).
    clock.now = T0 + 500
    current["rules"] = ruleset(RULES.split("heartbeats:")[0])
    found = watch.check()
    assert found is not None and [a.source_event_id for a, _ in found.alerts] == ["heartbeat:watchdog:removed:1"]
    PipelineStage(store, lambda: current["rules"]).drain()
    assert heartbeat_incidents(store) == [(KEY, "resolved", "P1")]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(heartbeats)).scalar_one() == 0


def test_the_check_interval_is_a_setting() -> None:
    from bridge.config import Settings
    from bridge.errors import ConfigError

    assert Settings.from_env({}).heartbeat_check_seconds == 15.0
    assert Settings.from_env({"BRIDGE_HEARTBEAT_CHECK_INTERVAL": "0.5"}).heartbeat_check_seconds == 0.5
    with pytest.raises(ConfigError, match="BRIDGE_HEARTBEAT_CHECK_INTERVAL"):
        Settings.from_env({"BRIDGE_HEARTBEAT_CHECK_INTERVAL": "0"})


