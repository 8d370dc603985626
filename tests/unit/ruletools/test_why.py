"""`alerts --why`: the story of one stored alert.

The story (`tell`) is a pure function of what was recorded: tables of records in, the verdict and the chapters out.
What is recorded (`Store.alert_record`, `gather`) is read from a real SQLite store after the real pipeline stage
and delivery worker ran, PagerDuty faked at the HTTP edge, on a manual clock.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker
from bridge.errors import ConfigError, ConfigErrors
from bridge.model import Alert, AlertState
from bridge.pipeline.silences.admin import create_silence
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.loader import compile_sources
from bridge.rules.model import Ruleset
from bridge.ruletools.why import AlertFacts, format_story, gather, tell
from bridge.store import Store
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = [("routing.yaml", """\
settings: {storm_threshold: 2, storm_window: 5m}
rules:
  - name: db-down
    match: {service: db, title: {regex: '^DB down'}}
    severity: P0
    inhibits: {match: {service: db}, equal: [service]}
  - name: disk
    match: {service: db}
    severity: P2
  - name: flappy
    match: {service: web}
    severity: P2
    pending: 5m
  - name: api
    match: {service: api}
    severity: P1
    repage_after: 30m
  - name: cache
    match: {service: cache}
    severity: P2
  - name: batch
    match: {service: batch}
    action: suppress
""")]
RULESET = compile_sources(RULES).ruleset


# -- the story, from records (pure) -------------------------------------------------------------------------------


def decision_of(service: str | None, title: str = "t", state: AlertState = AlertState.FIRING) -> dict[str, Any]:
    alert = Alert(source="datadog", source_event_id="e", received_at=T0, title=title, state=state, group_key="g",
                  service=service)
    return evaluate(alert, RULESET, T0).to_dict()


def record(outcome: str, *, service: str | None = "api", title: str = "api slow",
           state: AlertState = AlertState.FIRING, jobs: tuple[dict[str, Any], ...] = (),
           incident: dict[str, Any] | None = None, decision: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    alert = Alert(source="datadog", source_event_id="e1", received_at=T0, title=title, state=state, group_key="g",
                  service=service)
    stored = {"id": 12, "source": "datadog", "source_event_id": "e1", "received_at": T0.isoformat(),
              "title": title, "state": state.value, "dedup_key": "g", "group_key": "g", "service": service,
              "outcome": outcome, "incident_id": incident["id"] if incident else None,
              "decided_at": None if outcome == "pending" else T0.isoformat(),
              "alert": alert.to_dict(include_raw=False),
              "decision": decision or decision_of(service, title, state)}
    out = {"alert": stored, "journaled_at": T0.timestamp(), "incident": incident, "timeline": [], "jobs": list(jobs),
           "silence": None, "digest": None, "undecided_before": 0}
    out.update(extra)
    return out


def job(state: str, action: str = "trigger", **values: Any) -> dict[str, Any]:
    return {"id": 3, "kind": "event", "action": action, "state": state, "attempts": 0, "last_error": None,
            "reason": None, "created_at": T0.isoformat(), "next_attempt_at": T0.isoformat(),
            "delivered_at": None, **values}


INCIDENT = {"id": 7, "status": "open", "severity": "P0", "title": "DB down on db-1", "rule": "db-down",
            "opened_at": T0.isoformat(), "resolved_at": None, "last_paged_at": None,
            "pagerduty": {"id": None, "html_url": None}, "details": {}}
LATER = (T0 + timedelta(seconds=5)).isoformat()
SILENCE = {"id": 4, "owner": "alice", "reason": "drill", "matchers": ["service=api"], "description": "service=api",
           "starts_at": T0.isoformat(), "ends_at": (T0 + timedelta(hours=2)).isoformat(), "expired_at": None,
           "created_at": T0.isoformat(), "created_by": "cli:bob@host"}
SILENCED = {**decision_of("api"), "action": "suppress", "details": {"silence_id": 4}}
FLAPPY = decision_of("web", "web flap")

VERDICTS = [
    ("pending", record("pending", undecided_before=2), None,
     "not decided yet: the pipeline stage has not reached it (2 older journal entries before it)"),
    ("failed", record("failed"), False, "not paged: the pipeline stage could not decide it and set it aside as failed"),
    ("delivered", record("opened", incident=INCIDENT, jobs=(job("delivered", delivered_at=LATER, attempts=1),)),
     True, "paged: opened incident 7; PagerDuty accepted the trigger at 2026-12-01 12:00:05 UTC"),
    ("dry-run", record("opened", incident=INCIDENT, jobs=(job("dry_run", delivered_at=LATER),)), False,
     "not paged: opened incident 7, but the bridge runs in dry-run (no PAGERDUTY_ROUTING_KEY): the event was printed "
     "at 2026-12-01 12:00:05 UTC, not sent"),
    ("pending-window", record("opened", service="web", title="web flap", incident=INCIDENT,
                              jobs=(job("pending", next_attempt_at=(T0 + timedelta(minutes=5)).isoformat()),)),
     None, "not paged yet: opened incident 7; flap control holds the page back 300 s, until 2026-12-01 12:05:00 UTC"),
    ("retrying", record("opened", incident=INCIDENT, jobs=(job("pending", attempts=2, last_error="HTTP 503",
                                                               next_attempt_at=LATER),)),
     None, "not paged yet: opened incident 7; 2 attempt(s) failed (last: HTTP 503), next at 2026-12-01 12:00:05 UTC"),
    ("queued", record("opened", incident=INCIDENT, jobs=(job("pending"),)), None,
     "not paged yet: opened incident 7; the page is queued (job 3)"),
    ("dead-letter", record("opened", incident=INCIDENT, jobs=(job("dead", attempts=1, reason="rejected",
                                                                  last_error="HTTP 400: Invalid routing key"),)),
     False, "not paged: opened incident 7, but delivery gave up (job 3 is a dead letter: HTTP 400: Invalid routing "
     "key [rejected]); once the cause is fixed, POST /api/v1/jobs/3/retry sends it"),
    ("dropped", record("opened", service="web", title="web flap", incident=INCIDENT,
                       jobs=(job("superseded", reason="resolved_first"),)), False,
     "not paged: opened incident 7, but the alert recovered before its page was sent (flap control: the rule holds "
     "pages back 300 s): dropped"),
    ("discarded", record("opened", incident=INCIDENT, jobs=(job("discarded"),)), False,
     "not paged: opened incident 7, but an operator discarded its page (job 3)"),
    ("raised", record("raised", incident=INCIDENT, jobs=(job("delivered", delivered_at=LATER),)), True,
     "paged: raised incident 7 to P1; PagerDuty accepted"),
    ("reopened", record("reopened", incident=INCIDENT, jobs=(job("delivered", delivered_at=LATER),)), True,
     "paged: reopened incident 7 (its resolution did not hold); PagerDuty accepted"),
    ("silenced", record("suppressed", decision=SILENCED, silence=SILENCE), False,
     "not paged: silenced by silence 4 (alice: drill), until 2026-12-01 14:00:00 UTC"),
    ("rule-suppresses", record("suppressed", service="batch", title="batch late"), False,
     "not paged: rule batch says suppress"),
    ("no-rule", record("recorded", service="unknown"), False,
     "not paged: recorded only: no rule matched; no severity: no dimension, category or severity from the rules"),
    ("heartbeat", record("heartbeat", service=None, title="Watchdog",
                         decision={**decision_of(None, "Watchdog"), "details": {"heartbeats": ["watchdog"]}}),
     False, "not paged: a beat of heartbeat watchdog, and no rule matched it: counted as a sign its source is alive"),
    ("inhibited", record("inhibited", service="db", title="disk full", incident=INCIDENT), False,
     "not paged: inhibited by open incident 7 (P0, rule db-down), which it was attached to"),
    ("storm", record("storm", service="cache", title="cpu high 3", incident=INCIDENT,
                     digest=job("pending", kind="storm_digest", action="storm_digest", id=9, next_attempt_at=LATER)),
     False, "not paged: alert storm of rule cache: attached to incident 7; folded into its storm digest (job 9, due "
     "at 2026-12-01 12:00:05 UTC)"),
    ("attached", record("attached", incident=INCIDENT, timeline=[
        {"kind": "alert", "at": T0.isoformat(), "personnel": "", "actions": "",
         "description": "api slow (P1): attached to the open incident (re-page interval 1800s not elapsed)"}]),
     False, "not paged: its group's incident 7 was open: attached to the open incident (re-page interval 1800s not "
     "elapsed)"),
    ("resolved", record("resolved", state=AlertState.RESOLVED, incident=INCIDENT,
                        jobs=(job("delivered", action="resolve", delivered_at=LATER),)), False,
     "a recovery (it resolves, it never pages): resolved incident 7; the resolve is sent at 2026-12-01 12:00:05 UTC"),
    ("resolved-before-page", record("resolved_before_page", state=AlertState.RESOLVED, incident=INCIDENT), False,
     "a recovery (it resolves, it never pages): resolved incident 7 before its page was sent: the page was dropped"),
    ("member-recovered", record("member_recovered", state=AlertState.RESOLVED, incident=INCIDENT), False,
     "a recovery (it resolves, it never pages): its group recovered; incident 7 stays open while other groups "
     "fire"),
    ("nothing-to-resolve", record("nothing_to_resolve", state=AlertState.RESOLVED), False,
     "a recovery (it resolves, it never pages): no open incident of its group, nothing to resolve"),
]


@pytest.mark.parametrize(("stored", "paged", "verdict"), [c[1:] for c in VERDICTS], ids=[c[0] for c in VERDICTS])
def test_the_verdict_says_whether_it_paged_and_why_not(stored: dict[str, Any], paged: bool | None,
                                                       verdict: str) -> None:
    story = tell(AlertFacts(stored, RULESET, ruleset_recorded=True)).to_json()
    assert story["paged"] is paged
    assert story["verdict"].startswith(verdict), story["verdict"]
    assert story["story"][1] == f"verdict: {story['verdict']}"


CHAPTERS = [
    ("silence", record("suppressed", decision=SILENCED, silence=SILENCE), "silence",
     {**SILENCE}, "silence: 4 owned by alice (drill), service=api, until 2026-12-01 14:00:00 UTC; created by "
                  "cli:bob@host"),
    ("inhibition", record("inhibited", service="db", title="disk full", incident=INCIDENT), "inhibition",
     {"incident": 7, "rule": "db-down", "severity": "P0"}, "inhibition: by incident 7 (P0, rule db-down)"),
    ("storm", record("storm", service="cache", title="cpu", incident={**INCIDENT, "rule": "cache"},
                     digest=job("delivered", id=9, kind="storm_digest", action="storm_digest", delivered_at=LATER)),
     "storm", {"incident": 7, "rule": "cache", "digest": {**job("delivered", id=9, kind="storm_digest",
                                                               action="storm_digest", delivered_at=LATER)}},
     "storm: attached to incident 7 of rule cache; digest job 9 sent at 2026-12-01 12:00:05 UTC"),
    ("flap-held", record("opened", service="web", title="web flap", incident=INCIDENT,
                         jobs=(job("pending", next_attempt_at=(T0 + timedelta(minutes=5)).isoformat()),)),
     "flap", {"pending_seconds": 300, "page_due_at": (T0 + timedelta(minutes=5)).isoformat(), "dropped": False},
     "flap window: pages held back 300 s, page due at 2026-12-01 12:05:00 UTC"),
    ("flap-dropped", record("opened", service="web", title="web flap", incident=INCIDENT,
                            jobs=(job("superseded"),)), "flap",
     {"pending_seconds": 300, "page_due_at": None, "dropped": True},
     "flap window: pages held back 300 s; the page was dropped"),
    ("reopen", record("reopened", incident={**INCIDENT, "details": {"reopens": [
        {"at": LATER, "resolved_at": T0.isoformat(), "pagerduty": None, "pagerduty_kept_open": False}]}},
                      jobs=(job("pending"),)), "reopen",
     {"incident": 7, "resolved_at": T0.isoformat(), "pagerduty_kept_open": False},
     "reopen: incident 7 had resolved at 2026-12-01 12:00:00 UTC; it reopened instead of a new incident"),
]


@pytest.mark.parametrize(("stored", "chapter", "facts", "line"), [c[1:] for c in CHAPTERS],
                         ids=[c[0] for c in CHAPTERS])
def test_each_chapter_is_in_the_json_and_in_the_lines(stored: dict[str, Any], chapter: str, facts: dict[str, Any],
                                                      line: str) -> None:
    story = tell(AlertFacts(stored, RULESET, ruleset_recorded=True))
    assert story.facts[chapter] == facts
    assert line in story.lines
    others = {"silence", "inhibition", "storm", "flap", "reopen"} - {chapter}
    assert all(story.facts[other] is None for other in others)


def test_the_lines_of_a_silenced_alert() -> None:
    story = tell(AlertFacts(record("suppressed", decision=SILENCED, silence=SILENCE), RULESET,
                            ruleset_recorded=True))
    assert format_story(story) == "\n".join([
        "alert 12: api slow  [datadog, firing, received 2026-12-01 12:00:00 UTC]",
        "verdict: not paged: silenced by silence 4 (alice: drill), until 2026-12-01 14:00:00 UTC",
        "decision: suppress P1 by rule api, urgency high",
        f"  rules: explained with ruleset {RULESET.hash}, the one it was decided with",
        "  - api: applied",
        "  reasons: rule api (routing.yaml:14) matched; rule api sets severity P1",
        "silence: 4 owned by alice (drill), service=api, until 2026-12-01 14:00:00 UTC; created by cli:bob@host",
    ]) + "\n"


def test_only_the_timeline_entries_of_this_alert_are_told() -> None:
    # Two alerts of one receipt: one opened the incident, the other was inhibited by it at the same time.
    entries = [{"kind": kind, "description": text, "at": T0.isoformat(), "personnel": "", "actions": ""}
               for kind, text in (("detection", "first alert: DB down on db-1"),
                                  ("decision", "P0 by rule db-down: rule db-down sets severity P0"),
                                  ("inhibition", "disk full (P2) inhibited by open incident 7 (P0, rule db-down): "
                                                 "attached, not paged"))]
    opened = tell(AlertFacts(record("opened", service="db", title="DB down on db-1", incident=INCIDENT,
                                    timeline=entries), RULESET))
    inhibited = tell(AlertFacts(record("inhibited", service="db", title="disk full", incident=INCIDENT,
                                       timeline=entries), RULESET))
    assert [t["kind"] for t in opened.facts["timeline"]] == ["detection", "decision"]
    assert [t["kind"] for t in inhibited.facts["timeline"]] == ["inhibition"]


def test_the_rules_part_says_which_ruleset_explains_it() -> None:
    stored = record("recorded", service="unknown")
    assert tell(AlertFacts(stored, RULESET, ruleset_recorded=True)).facts["rule"]["ruleset"] == {
        "hash": RULESET.hash, "recorded": True,
        "note": f"explained with ruleset {RULESET.hash}, the one it was decided with"}
    # The rules changed since: a rule now pages the same alert, and the story says so next to the trace.
    changed = compile_sources([("routing.yaml", RULES[0][1] + "  - name: catch-all\n    severity: P3\n")]).ruleset
    current = tell(AlertFacts(stored, changed)).facts["rule"]
    assert current["ruleset"]["note"] == (f"explained with the current ruleset {changed.hash}: the ruleset it was "
                                          f"decided with ({RULESET.hash}) was not recorded in this database")
    assert current["ruleset"]["differs"] == ("these rules decide P3 page by rule catch-all, not no severity record "
                                             "by rule -")
    assert current["why_not_paged"] == []
    unrecorded = dict(stored, alert={**stored["alert"], "decision": {**stored["alert"]["decision"],
                                                                     "ruleset_hash": ""}})
    assert tell(AlertFacts(unrecorded, RULESET)).facts["rule"]["ruleset"]["note"] == (
        f"explained with the current ruleset {RULESET.hash}: no ruleset was recorded with the decision")
    broken = tell(AlertFacts(stored, None, ruleset_problem="the current rules are invalid (1 error(s))"))
    assert broken.facts["rule"]["ruleset"]["note"] == "not evaluated again: the current rules are invalid (1 error(s))"
    assert broken.facts["rule"]["why_not_paged"] == ["no severity: recorded, not paged"]
    assert "rules_considered" not in broken.facts["rule"]


def test_thresholds_and_dimensions_come_from_the_trace() -> None:
    rules = [("severity.yaml", """\
dimensions:
  users_affected_pct:
    thresholds:
      P0: {gt: 20}
      P1: {gte: 10, lte: 20}
rules:
  - name: checkout
    match: {service: checkout}
    dimension: users_affected_pct
""")]
    ruleset = compile_sources(rules).ruleset
    alert = Alert(source="datadog", source_event_id="e", received_at=T0, title="checkout errors",
                  state=AlertState.FIRING, group_key="g", service="checkout", value=12.5)
    stored = record("opened", service="checkout", title="checkout errors", decision=evaluate(alert, ruleset, T0)
                    .to_dict(), incident=INCIDENT, jobs=(job("pending"),))
    stored["alert"]["alert"] = alert.to_dict(include_raw=False)
    story = tell(AlertFacts(stored, ruleset, ruleset_recorded=True))
    rule = story.facts["rule"]
    assert rule["dimension_values"] == {"users_affected_pct": 12.5}
    assert set(rule["thresholds_crossed"]) == {"users_affected_pct"}
    assert "P1" in rule["thresholds_crossed"]["users_affected_pct"]
    assert "  dimensions: users_affected_pct=12.5" in story.lines
    assert any(line.startswith("  thresholds crossed: users_affected_pct: ") for line in story.lines)


# -- what is recorded, read from the store --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def recorded(store: Store, tmp_path: Path) -> Store:
    """A store whose ruleset load of RULES was recorded, as the bridge records it at start."""
    store.record_ruleset(ok=True, now=T0.timestamp(), hash_=RULESET.hash, files=RULES, base_dir=str(tmp_path))
    return store


def receive(store: Store, event_id: str, title: str, service: str | None, *, group: str | None = None,
            state: AlertState = AlertState.FIRING, at: datetime = T0, ruleset: Ruleset = RULESET) -> int:
    alert = Alert(source="datadog", source_event_id=event_id, received_at=at, title=title, state=state,
                  group_key=group or event_id, service=service)
    [accepted] = accept_and_decide(store, [(alert, evaluate(alert, ruleset, at))], [], at, ruleset)
    return accepted.alert_id


def story_of(store: Store, alert_id: int, current: Ruleset = RULESET) -> dict[str, Any]:
    facts = gather(store, alert_id, lambda: current)
    assert facts is not None
    return tell(facts).to_json()


def worker(store: Store, pd: FakePagerDuty, clock: Clock) -> DeliveryWorker:
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url)
    return DeliveryWorker(store, settings, client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0), clock=clock,
                          out=io.StringIO(), retry_multiplier=1.0, retry_max=10.0)


def test_an_inhibited_alert_names_the_incident_and_only_its_own_timeline(recorded: Store) -> None:
    # One receipt time for both: the opening decision's entries share the inhibition's time on incident 1.
    receive(recorded, "1", "DB down on db-1", "db")
    inhibited = receive(recorded, "2", "disk full on db-1", "db")
    story = story_of(recorded, inhibited)
    assert story["outcome"] == "inhibited" and story["paged"] is False
    assert story["inhibition"] == {"incident": 1, "rule": "db-down", "severity": "P0"}
    assert [t["kind"] for t in story["timeline"]] == ["inhibition"]
    assert story["rule"]["ruleset"]["recorded"] is True and story["delivery"] == []


def test_a_silenced_alert_names_the_silence_its_owner_and_who_created_it(recorded: Store) -> None:
    create_silence(recorded, {"matchers": ["service=api"], "owner": "alice@example.com", "reason": "DB drill",
                              "duration": "2h", "starts_at": T0.isoformat()}, T0, actor="cli:bob@host")
    silenced = receive(recorded, "1", "api slow", "api", at=T0 + timedelta(minutes=1))
    story = story_of(recorded, silenced)
    assert story["verdict"] == ("not paged: silenced by silence 1 (alice@example.com: DB drill), until "
                                "2026-12-01 14:00:00 UTC")
    assert story["silence"]["created_by"] == "cli:bob@host" and story["silence"]["matchers"] == ["service=api"]
    assert story["rule"]["name"] == "api" and story["rule"]["action"] == "suppress"


def test_a_storm_alert_names_the_digest_it_was_folded_into(recorded: Store) -> None:
    ids = [receive(recorded, f"s{n}", f"cpu high {n}", "cache") for n in range(4)]
    first, last = story_of(recorded, ids[0]), story_of(recorded, ids[-1])
    assert first["outcome"] == "opened" and last["outcome"] == "storm"
    digest = last["storm"]["digest"]
    assert digest["kind"] == "storm_digest" and digest["state"] == "pending"
    assert last["storm"]["incident"] == first["incident"]["id"]
    assert f"folded into its storm digest (job {digest['id']}" in last["verdict"]


def test_a_flapping_alert_held_back_then_dropped(recorded: Store) -> None:
    fired = receive(recorded, "1", "web flap", "web")
    held = story_of(recorded, fired)
    assert held["paged"] is None and held["flap"] == {
        "pending_seconds": 300, "page_due_at": (T0 + timedelta(minutes=5)).isoformat(), "dropped": False}
    recovered = receive(recorded, "2", "web flap", "web", group="1", state=AlertState.RESOLVED,
                        at=T0 + timedelta(seconds=30))
    dropped = story_of(recorded, fired)
    assert dropped["paged"] is False and dropped["flap"]["dropped"] is True
    assert "recovered before its page was sent" in dropped["verdict"]
    assert story_of(recorded, recovered)["outcome"] == "resolved_before_page"


def test_delivery_delivered_and_dead_lettered(recorded: Store) -> None:
    clock = Clock()
    with FakePagerDuty(tls=False) as pd:
        paged = receive(recorded, "1", "api slow", "api")
        while worker(recorded, pd, clock).run_once():
            pass
    story = story_of(recorded, paged)
    assert story["paged"] is True and story["delivery"][0]["state"] == "delivered"
    assert story["verdict"] == "paged: opened incident 1; PagerDuty accepted the trigger at 2026-12-01 12:00:00 UTC"
    # PagerDuty refuses the routing key: the page is a dead letter, and the story quotes PagerDuty's answer.
    with FakePagerDuty(tls=False, routing_keys={"R" * 32: "PSVC001"}) as refusing:
        refused = receive(recorded, "2", "DB down", "db")
        while worker(recorded, refusing, clock).run_once():
            pass
    story = story_of(recorded, refused)
    [dead] = story["delivery"]
    assert dead["state"] == "dead" and story["paged"] is False
    assert "delivery gave up" in story["verdict"] and "Invalid routing key" in story["verdict"]
    assert f"POST /api/v1/jobs/{dead['id']}/retry" in story["verdict"]


def test_an_attached_repeat_says_the_repage_interval_has_not_elapsed(recorded: Store) -> None:
    receive(recorded, "1", "api slow", "api", group="g")
    repeat = receive(recorded, "2", "api slow", "api", group="g", at=T0 + timedelta(minutes=1))
    story = story_of(recorded, repeat)
    assert story["outcome"] == "attached"
    assert story["verdict"] == "not paged: its group's incident 1 was open: a page is already queued"


def test_explained_with_the_ruleset_it_was_decided_with_after_a_reload(recorded: Store, tmp_path: Path) -> None:
    recorded_alert = receive(recorded, "1", "batch late", "batch")
    # The rules change and are reloaded: batch now pages. The story still explains with the recorded rules.
    newer = [("routing.yaml", RULES[0][1].replace("    action: suppress\n", "    severity: P3\n"))]
    current = compile_sources(newer).ruleset
    recorded.record_ruleset(ok=True, now=T0.timestamp() + 60, hash_=current.hash, files=newer,
                            base_dir=str(tmp_path))
    story = story_of(recorded, recorded_alert, current)
    assert story["rule"]["ruleset"]["hash"] == RULESET.hash and story["rule"]["ruleset"]["recorded"] is True
    assert story["rule"]["why_not_paged"] == ["rule batch says suppress"]
    # An alert decided by rules this database never recorded: the current ones, said so, with the difference.
    stray = compile_sources([("routing.yaml", RULES[0][1] + "  - name: catch-all\n    severity: P3\n")]).ruleset
    unrecorded = receive(recorded, "2", "who knows", None, ruleset=stray)
    told = story_of(recorded, unrecorded, current)
    assert told["rule"]["ruleset"]["recorded"] is False
    assert f"the ruleset it was decided with ({stray.hash}) was not recorded" in told["rule"]["ruleset"]["note"]
    assert told["rule"]["ruleset"]["differs"] == ("these rules decide no severity record by rule -, not P3 page by "
                                                  "rule catch-all")


def test_invalid_current_rules_leave_the_stored_decision(store: Store) -> None:
    alert_id = receive(store, "1", "batch late", "batch")  # no ruleset recorded in this store

    def invalid() -> Ruleset:
        raise ConfigErrors([ConfigError("rules: bad")])

    facts = gather(store, alert_id, invalid)
    assert facts is not None and facts.ruleset is None
    story = tell(facts).to_json()
    assert story["rule"]["ruleset"]["note"] == "not evaluated again: the current rules cannot be loaded: rules: bad"
    assert story["verdict"] == "not paged: rule batch says suppress: not paged"


def test_an_undecided_alert_and_an_unknown_one(store: Store) -> None:
    for n in range(3):
        alert = Alert(source="datadog", source_event_id=str(n), received_at=T0, title="api slow",
                      state=AlertState.FIRING, group_key=str(n), service="api")
        [accepted] = store.journal([(alert, evaluate(alert, RULESET, T0))], [], T0)  # no stage has run
    story = story_of(store, accepted.alert_id)
    assert story["outcome"] == "pending" and story["paged"] is None
    assert "(2 older journal entries before it)" in story["verdict"]
    assert gather(store, 999, lambda: RULESET) is None
