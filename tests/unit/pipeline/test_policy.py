"""The policy stage as a table: (alert, decision, incidents around it) -> plan."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import Action, Alert, AlertState, Decision, Severity, dedup_key_for
from bridge.pipeline.policy import IncidentState, PolicyContext, plan

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def alert(state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(source="datadog", source_event_id="e", received_at=NOW, title="Checkout errors", state=state,
                 group_key="datadog:1:service:checkout")


def decision(action: Action = Action.PAGE, severity: Severity | None = Severity.P1, *, pending: int = 0,
             repage: int = 0) -> Decision:
    return Decision(action=action, severity=severity, rule="r", reasons=("rule r matched", "x"),
                    pending_seconds=pending, repage_seconds=repage)


def incident(severity: Severity = Severity.P1, *, paged_ago: float | None = 60, attempted: bool = True,
             pending: int = 0, firing: int = 1, resolved_ago: float | None = None) -> IncidentState:
    return IncidentState(id=7, severity=severity, opened_at=NOW - timedelta(hours=1),
                         last_paged_at=NOW - timedelta(seconds=paged_ago) if paged_ago is not None else None,
                         any_trigger_attempted=attempted, pending_triggers=pending, firing_members=firing,
                         resolved_at=NOW - timedelta(seconds=resolved_ago) if resolved_ago is not None else None)


def resolved(severity: Severity = Severity.P1, *, ago: float = 240, paged: bool = True) -> PolicyContext:
    """The alert's group has no open incident; its incident resolved `ago` seconds ago (within the window)."""
    return PolicyContext(recently_resolved=incident(severity, resolved_ago=ago, attempted=paged,
                                                    paged_ago=600 if paged else None), reopen_within=1800)


CASES = [
    # id, alert state, decision, context, expected (outcome, incident op, event)
    ("new-page-opens", AlertState.FIRING, decision(), PolicyContext(), ("opened", "create", "trigger")),
    ("record-without-incident", AlertState.FIRING, decision(Action.RECORD, None), PolicyContext(),
     ("recorded", None, None)),
    ("suppress-attaches-to-open", AlertState.FIRING, decision(Action.SUPPRESS), PolicyContext(incident()),
     ("suppressed", "attach", None)),
    ("higher-severity-raises", AlertState.FIRING, decision(severity=Severity.P0), PolicyContext(incident()),
     ("raised", "update", "trigger")),
    ("lower-severity-attaches-never-lowers", AlertState.FIRING, decision(severity=Severity.P3),
     PolicyContext(incident()), ("attached", "attach", None)),
    ("repeat-within-repage-interval-attaches", AlertState.FIRING, decision(repage=600),
     PolicyContext(incident(paged_ago=60)), ("attached", "attach", None)),
    ("repeat-after-repage-interval-repages", AlertState.FIRING, decision(repage=600),
     PolicyContext(incident(paged_ago=601)), ("repaged", "update", "trigger")),
    ("repeat-without-interval-attaches", AlertState.FIRING, decision(), PolicyContext(incident()),
     ("attached", "attach", None)),
    ("repeat-while-page-queued-attaches", AlertState.FIRING, decision(repage=1),
     PolicyContext(incident(paged_ago=None, attempted=False, pending=1)), ("attached", "attach", None)),
    ("recovery-resolves", AlertState.RESOLVED, decision(Action.RESOLVE), PolicyContext(incident()),
     ("resolved", "resolve", "resolve")),
    ("recovery-before-page-drops-it", AlertState.RESOLVED, decision(Action.RESOLVE),
     PolicyContext(incident(paged_ago=None, attempted=False, pending=1)),
     ("resolved_before_page", "resolve", None)),
    ("recovery-of-one-group-of-several", AlertState.RESOLVED, decision(Action.RESOLVE),
     PolicyContext(incident(firing=3)), ("member_recovered", "attach", None)),
    ("recovery-without-incident", AlertState.RESOLVED, decision(Action.RESOLVE), PolicyContext(),
     ("nothing_to_resolve", None, None)),
    ("storm-attaches-to-anchor", AlertState.FIRING, decision(), PolicyContext(storm_anchor=incident(),
                                                                               storm_count=10),
     ("storm", "attach", None)),
    ("inhibited-by-higher-incident", AlertState.FIRING, decision(severity=Severity.P2),
     PolicyContext(inhibitor=incident(Severity.P0), inhibitor_rule="outage"), ("inhibited", "attach", None)),
    # Flapping after a fix: the group's incident resolved within reopen_within (the store only offers one then).
    ("refire-after-resolution-reopens", AlertState.FIRING, decision(), resolved(),
     ("reopened", "reopen", "trigger")),
    ("refire-of-an-incident-that-never-paged-opens-anew", AlertState.FIRING, decision(), resolved(paged=False),
     ("opened", "create", "trigger")),
    ("recovery-after-resolution-resolves-nothing", AlertState.RESOLVED, decision(Action.RESOLVE), resolved(),
     ("nothing_to_resolve", None, None)),
    ("record-after-resolution-does-not-reopen", AlertState.FIRING, decision(Action.RECORD, Severity.P3),
     resolved(), ("recorded", None, None)),
    ("inhibition-comes-before-reopening", AlertState.FIRING, decision(severity=Severity.P2),
     PolicyContext(inhibitor=incident(Severity.P0), inhibitor_rule="outage",
                   recently_resolved=incident(resolved_ago=60)), ("inhibited", "attach", None)),
    ("reopening-comes-before-storms", AlertState.FIRING, decision(),
     PolicyContext(recently_resolved=incident(resolved_ago=60), reopen_within=1800, storm_anchor=incident(),
                   storm_count=10), ("reopened", "reopen", "trigger")),
]


@pytest.mark.parametrize(("state", "dec", "ctx", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(state: AlertState, dec: Decision, ctx: PolicyContext, expected: tuple[str, str | None, str | None]
              ) -> None:
    step = plan(alert(state), dec, ctx, NOW)
    assert (step.outcome, step.incident, step.event) == expected
    if step.incident in ("attach", "update", "resolve", "reopen"):
        assert step.target == 7
    assert step.timeline or step.outcome in ("recorded", "nothing_to_resolve")


@pytest.mark.parametrize(("state", "dec", "ctx"), [c[1:4] for c in CASES], ids=[c[0] for c in CASES])
def test_timeline_texts_carry_one_priority_the_decided_one(state: AlertState, dec: Decision, ctx: PolicyContext
                                                            ) -> None:
    # Datadog's title carries the monitor's own priority and state: the timeline names the alert without them.
    tagged = replace(alert(state), title="[P3] [Triggered] Checkout errors")
    for _, text in plan(tagged, dec, ctx, NOW).timeline:
        assert "[P3]" not in text and "[Triggered]" not in text, text
        if "Checkout" in text:
            assert "Checkout errors" in text


def test_pending_window_delays_the_first_page() -> None:
    step = plan(alert(), decision(pending=120), PolicyContext(), NOW)
    assert step.not_before == NOW + timedelta(seconds=120)
    assert any("pending for 120s" in text for _, text in step.timeline)


REOPEN_SEVERITY = [
    # id, the resolved incident's severity, the new alert's, the reopened incident's
    ("same", Severity.P1, Severity.P1, Severity.P1),
    ("higher-alert-raises", Severity.P2, Severity.P0, Severity.P0),
    ("lower-alert-never-lowers", Severity.P0, Severity.P2, Severity.P0),
]


@pytest.mark.parametrize(("was", "now", "expected"), [c[1:] for c in REOPEN_SEVERITY],
                         ids=[c[0] for c in REOPEN_SEVERITY])
def test_reopen_severity_is_the_higher(was: Severity, now: Severity, expected: Severity) -> None:
    assert plan(alert(), decision(severity=now), resolved(was), NOW).severity is expected


def test_reopen_pages_at_once_and_says_the_resolution_did_not_hold() -> None:
    step = plan(alert(), decision(pending=120), resolved(ago=240), NOW)
    assert step.not_before is None  # the first page went out already: no new pending window
    assert (step.member, step.timeline[0][0]) == ("join", "reopen")
    assert step.timeline[0][1] == ("the resolution did not hold: Checkout errors (P1) fired again 4 min after the "
                                   "resolution (reopen_within 30 min); incident 7 reopened at P1")


def test_resolve_supersedes_queued_triggers() -> None:
    assert plan(alert(AlertState.RESOLVED), decision(Action.RESOLVE), PolicyContext(incident()), NOW)\
        .supersede_pending


DEDUP = [
    ("short-key-kept", "datadog:1:service:checkout", "datadog:1:service:checkout"),
    ("255-kept", "x" * 255, "x" * 255),
]


@pytest.mark.parametrize(("group_key", "expected"), [d[1:] for d in DEDUP], ids=[d[0] for d in DEDUP])
def test_dedup_key_keeps_keys_within_pagerdutys_limit(group_key: str, expected: str) -> None:
    assert dedup_key_for(group_key) == expected


def test_long_dedup_keys_are_hashed_stably() -> None:
    long_key = "datadog:1:" + ",".join(f"tag{i}:value{i}" for i in range(60))
    first = dedup_key_for(long_key)
    assert len(first) <= 255 and first.startswith("datadog:sha256:")
    assert dedup_key_for(long_key) == first
    assert dedup_key_for(long_key + "x") != first
