"""`alerts --why ID`: the story of one stored alert, answering "why was this (not) paged?".

What the journal and the pipeline stage recorded of the alert (`Store.alert_record`: the alert and its decision,
the incident it joined, the timeline entries and Events API jobs of it, the silence that suppressed it, the storm
digest it was folded into) and the rules it was decided with, in; a story out, as structured JSON (`tell`) and as
lines (`format_story`), in the order the bridge went: rule, silence, inhibition, storm, flap window, reopening,
incident, delivery.

`tell` is pure: no clock, no store. The rules are evaluated again to show the rules considered, the thresholds
crossed and `why_not_paged` (as `rules explain` does), with the ruleset the alert was decided with when its load
was recorded, else with the current one, and the story says which. `gather` is the edge that reads the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.model import Action, Alert, Decision
from bridge.rules.engine import evaluate_traced
from bridge.rules.model import Ruleset
from bridge.ruletools.explain import why_not_paged

if TYPE_CHECKING:
    from bridge.store import Store

# Outcomes of the policy (`bridge.pipeline.policy.plan`) that queue a trigger: whether a page went out is the
# trigger job's state.
PAGING = frozenset({"opened", "raised", "repaged", "reopened"})
# Outcomes of a recovery: it resolves, it never pages.
RECOVERIES = frozenset({"resolved", "resolved_before_page", "member_recovered", "nothing_to_resolve"})
# Timeline kinds the stage writes, for these outcomes, with a fixed text that names no alert: the opening decision
# and the flap-control line, the dropped page.
UNTITLED_KINDS = {"opened": frozenset({"decision"}), "resolved_before_page": frozenset({"resolution"})}


@dataclass(frozen=True)
class AlertFacts:
    """What was recorded of one alert (`Store.alert_record`) and the rules to explain its decision with."""

    record: Mapping[str, Any]
    ruleset: Ruleset | None = None
    # True: `ruleset` is the one the alert was decided with (same hash); False: the current rules, told apart.
    ruleset_recorded: bool = False
    # Why the rules could not be evaluated again (no ruleset), shown instead of the trace.
    ruleset_problem: str = ""


@dataclass(frozen=True)
class Story:
    """The story of one alert: `facts` (the JSON of the API and `--json`) and `lines` (the CLI's text)."""

    facts: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON answer: the facts, with the lines as `story`."""
        return {**self.facts, "story": list(self.lines)}


def gather(store: Store, alert_id: int, current_rules: Callable[[], Ruleset]) -> AlertFacts | None:
    """Read what was recorded of `alert_id` (None when there is no such alert) and find the ruleset it was
    decided with: the recorded snapshot of its hash, else `current_rules()` (which may raise ConfigErrors; the
    story then says the rules could not be evaluated)."""
    from bridge.errors import ConfigErrors
    from bridge.rules.loader import compile_sources

    record = store.alert_record(alert_id)
    if record is None:
        return None
    wanted = str((record["alert"].get("decision") or {}).get("ruleset_hash") or "")
    if wanted:
        snapshot = store.ruleset_by_hash(wanted)
        if snapshot is not None:
            try:
                recorded = compile_sources(snapshot["files"], Path(snapshot["base_dir"] or ".")).ruleset
            except ConfigErrors:
                pass  # a snapshot this version of the bridge cannot read: the current rules explain instead
            else:
                return AlertFacts(record, recorded, ruleset_recorded=True)
    try:
        current = current_rules()
    except ConfigErrors as exc:
        more = f" and {len(exc.errors) - 1} more (`incident-bridge rules lint` lists them)" \
            if len(exc.errors) > 1 else ""
        return AlertFacts(record, None, ruleset_problem=f"the current rules cannot be loaded: {exc.errors[0]}{more}")
    return AlertFacts(record, current, ruleset_recorded=bool(wanted) and current.hash == wanted)


def tell(facts: AlertFacts) -> Story:
    """The story of one alert, from what was recorded of it. Pure."""
    record = facts.record
    stored = record["alert"]
    decision = Decision.from_dict(stored["decision"])
    outcome = str(stored["outcome"])
    incident = record.get("incident")
    jobs = list(record.get("jobs") or [])
    silence = record.get("silence")
    title = str(stored["title"])
    # Entries naming the alert, and the fixed texts its own outcome writes: other alerts of the same receipt
    # write to the same incident at the same time.
    own_kinds = UNTITLED_KINDS.get(outcome, frozenset())
    timeline = [t for t in record.get("timeline") or [] if title in t["description"] or t["kind"] in own_kinds]

    out: dict[str, Any] = {
        "alert": {k: stored.get(k) for k in ("id", "title", "source", "source_event_id", "state", "service",
                                            "dedup_key", "received_at", "decided_at")},
        "outcome": outcome,
    }
    rule = _rule_facts(facts, decision)
    paged, verdict = _verdict(outcome, decision, rule, record, incident, jobs, silence, timeline)
    out.update(paged=paged, verdict=verdict, rule=rule)
    out["silence"] = dict(silence) if silence else None
    out["inhibition"] = ({"incident": incident["id"], "rule": incident.get("rule"),
                          "severity": incident.get("severity")} if outcome == "inhibited" and incident else None)
    digest = record.get("digest")
    out["storm"] = ({"incident": incident["id"], "rule": incident.get("rule"),
                     "digest": _job_brief(digest) if digest else None} if outcome == "storm" and incident else None)
    out["flap"] = _flap(decision, outcome, jobs)
    out["reopen"] = _reopen(outcome, incident)
    out["incident"] = ({k: incident.get(k) for k in ("id", "status", "severity", "title", "rule", "opened_at",
                                                     "resolved_at", "last_paged_at", "pagerduty")}
                       if incident else None)
    out["timeline"] = timeline
    out["delivery"] = [_job_brief(j) for j in jobs]
    return Story(out, _lines(out))


# -- the parts ----------------------------------------------------------------------------------------------------


def _rule_facts(facts: AlertFacts, decision: Decision) -> dict[str, Any]:
    """The rule's part: the stored decision, and the trace of the rules evaluated again."""
    stored = facts.record["alert"]
    silenced = "silence_id" in decision.details
    out: dict[str, Any] = {
        "name": decision.rule, "action": decision.action.value,
        "severity": decision.severity.name if decision.severity else None, "urgency": decision.urgency,
        "roles": list(decision.roles), "dimensions": dict(decision.dimensions),
        "categories": sorted(decision.categories), "reasons": list(decision.reasons),
        "pending_seconds": decision.pending_seconds, "repage_seconds": decision.repage_seconds,
        "decided_with": decision.ruleset_hash or None,
    }
    ruleset = facts.ruleset
    if ruleset is None:
        out["ruleset"] = {"hash": None, "recorded": False,
                          "note": f"not evaluated again: {facts.ruleset_problem or 'no rules'}"}
        out["why_not_paged"] = [] if decision.action is Action.PAGE or silenced else list(decision.reasons[-1:])
        return out
    alert = Alert.from_dict(stored["alert"])
    trace = evaluate_traced(alert, ruleset, alert.received_at)
    if facts.ruleset_recorded:
        note = f"explained with ruleset {ruleset.hash}, the one it was decided with"
    elif decision.ruleset_hash:
        note = (f"explained with the current ruleset {ruleset.hash}: the ruleset it was decided with "
                f"({decision.ruleset_hash}) was not recorded in this database")
    else:
        note = f"explained with the current ruleset {ruleset.hash}: no ruleset was recorded with the decision"
    out["ruleset"] = {"hash": ruleset.hash, "recorded": facts.ruleset_recorded, "note": note}
    now = trace.decision
    before_silence = Action.PAGE if silenced else decision.action
    if (now.action, now.severity, now.rule) != (before_silence, decision.severity, decision.rule):
        out["ruleset"]["differs"] = (f"these rules decide {_decision_text(now.action, now.severity, now.rule)}, "
                                     f"not {_decision_text(before_silence, decision.severity, decision.rule)}")
    out["why_not_paged"] = [] if silenced else why_not_paged(alert, trace, ruleset)
    out["dimension_values"] = dict(trace.dimension_values)
    out["thresholds_crossed"] = dict(trace.thresholds)
    out["rules_considered"] = [{"rule": t.rule, "where": t.where, "matched": t.matched, "applied": t.applied,
                                "failed_conditions": list(t.failed)} for t in trace.considered]
    return out


def _decision_text(action: Action, severity: Any, rule: str | None) -> str:
    return f"{severity.name if severity else 'no severity'} {action.value} by rule {rule or '-'}"


def _verdict(outcome: str, decision: Decision, rule: Mapping[str, Any], record: Mapping[str, Any],
             incident: Mapping[str, Any] | None, jobs: Sequence[Mapping[str, Any]],
             silence: Mapping[str, Any] | None, timeline: Sequence[Mapping[str, Any]]) -> tuple[bool | None, str]:
    """Whether a page went out (None: not known yet) and the one sentence that says why."""
    inc = f"incident {incident['id']}" if incident else "its incident"
    if outcome == "pending":
        ahead = int(record.get("undecided_before") or 0)
        return None, (f"not decided yet: the pipeline stage has not reached it ({ahead} older journal "
                      "entr" + ("y" if ahead == 1 else "ies") + " before it); it runs in the worker process "
                      "(`incident-bridge serve`, or `incident-bridge worker`)")
    if outcome == "failed":
        return False, ("not paged: the pipeline stage could not decide it and set it aside as failed (the "
                       "worker's log names the error)")
    if outcome in PAGING:
        trigger = next((j for j in reversed(jobs) if j.get("action") == "trigger"), None)
        severity = decision.severity.name if decision.severity else "-"
        doing = {"opened": f"opened {inc}", "raised": f"raised {inc} to {severity}", "repaged": f"re-paged {inc}",
                 "reopened": f"reopened {inc} (its resolution did not hold)"}[outcome]
        return _delivery_verdict(doing, trigger, decision)
    if outcome == "suppressed":
        if silence:
            return False, (f"not paged: silenced by silence {silence['id']} ({silence['owner']}: "
                           f"{silence['reason']}), until {_when(silence.get('ends_at'))}")
        return False, "not paged: " + ("; ".join(rule.get("why_not_paged") or []) or
                                       (decision.reasons[-1] if decision.reasons else "suppressed by the rules"))
    if outcome == "recorded":
        return False, "not paged: recorded only: " + ("; ".join(rule.get("why_not_paged") or []) or
                                                      (decision.reasons[-1] if decision.reasons else "no severity"))
    if outcome == "heartbeat":
        beats = ", ".join(str(b) for b in decision.details.get("heartbeats") or ()) or "-"
        return False, (f"not paged: a beat of heartbeat {beats}, and no rule matched it: counted as a sign its "
                       "source is alive (`incident-bridge heartbeats`), nothing else")
    if outcome == "inhibited":
        sev = (incident or {}).get("severity") or "-"
        return False, (f"not paged: inhibited by open {inc} ({sev}, rule {(incident or {}).get('rule') or '-'}), "
                       "which it was attached to")
    if outcome == "storm":
        digest = record.get("digest")
        folded = (f"; folded into its storm digest (job {digest['id']}, {_state_text(digest)})" if digest
                  else "")
        return False, f"not paged: alert storm of rule {decision.rule or '-'}: attached to {inc}{folded}"
    if outcome == "attached":
        # The stage's timeline entry says why: "<title> (P2): attached to the open incident (re-page interval...)".
        title = str(record["alert"]["title"])
        why = next((t["description"][len(title):].split("): ", 1)[1] for t in timeline
                    if t["kind"] == "alert" and t["description"].startswith(title)
                    and "): " in t["description"][len(title):]), "attached to it")
        return False, f"not paged: its group's {inc} was open: {why}"
    if outcome in RECOVERIES:
        return False, "a recovery (it resolves, it never pages): " + {
            "resolved": f"resolved {inc}" + _resolve_sent(jobs),
            "resolved_before_page": f"resolved {inc} before its page was sent: the page was dropped",
            "member_recovered": f"its group recovered; {inc} stays open while other groups fire",
            "nothing_to_resolve": "no open incident of its group, nothing to resolve",
        }[outcome]
    return None, f"outcome {outcome}"


def _delivery_verdict(doing: str, trigger: Mapping[str, Any] | None,
                      decision: Decision) -> tuple[bool | None, str]:
    """Whether the trigger of a paging outcome went out, from its job."""
    if trigger is None:
        return False, f"{doing}, but no page was queued"
    state = trigger["state"]
    job = f"job {trigger['id']}"
    if state == "delivered":
        return True, f"paged: {doing}; PagerDuty accepted the trigger at {_when(trigger.get('delivered_at'))}"
    if state == "dry_run":
        return False, (f"not paged: {doing}, but the bridge runs in dry-run (no PAGERDUTY_ROUTING_KEY): the event "
                       f"was printed at {_when(trigger.get('delivered_at'))}, not sent")
    if state == "superseded":
        flap = f" (flap control: the rule holds pages back {decision.pending_seconds} s)" \
            if decision.pending_seconds else ""
        return False, f"not paged: {doing}, but the alert recovered before its page was sent{flap}: dropped"
    if state == "dead":
        return False, (f"not paged: {doing}, but delivery gave up ({job} is a dead letter: "
                       f"{trigger.get('last_error') or '-'} [{trigger.get('reason') or '-'}]); once the cause is "
                       f"fixed, POST /api/v1/jobs/{trigger['id']}/retry sends it")
    if state == "discarded":
        return False, f"not paged: {doing}, but an operator discarded its page ({job})"
    if state == "sending":
        return None, f"{doing}; the page is being sent now ({job})"
    attempts = int(trigger.get("attempts") or 0)
    if attempts:
        return None, (f"not paged yet: {doing}; {attempts} attempt(s) failed (last: "
                      f"{trigger.get('last_error') or '-'}), next at {_when(trigger.get('next_attempt_at'))}")
    if decision.pending_seconds:
        return None, (f"not paged yet: {doing}; flap control holds the page back {decision.pending_seconds} s, "
                      f"until {_when(trigger.get('next_attempt_at'))}")
    return None, f"not paged yet: {doing}; the page is queued ({job})"


def _resolve_sent(jobs: Sequence[Mapping[str, Any]]) -> str:
    resolve = next((j for j in reversed(jobs) if j.get("action") == "resolve"), None)
    return f"; the resolve is {_state_text(resolve)}" if resolve else ""


def _flap(decision: Decision, outcome: str, jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The rule's pending window (flap control), when it held this alert's page back or dropped a page."""
    trigger = next((j for j in reversed(jobs) if j.get("action") == "trigger"), None)
    if outcome == "resolved_before_page":
        return {"pending_seconds": None, "page_due_at": None, "dropped": True}
    if not decision.pending_seconds or trigger is None:
        return None
    return {"pending_seconds": decision.pending_seconds, "page_due_at": trigger.get("next_attempt_at")
            if trigger["state"] == "pending" else None, "dropped": trigger["state"] == "superseded"}


def _reopen(outcome: str, incident: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if outcome != "reopened" or incident is None:
        return None
    reopens = (incident.get("details") or {}).get("reopens") or []
    last = reopens[-1] if reopens else {}
    return {"incident": incident["id"], "resolved_at": last.get("resolved_at"),
            "pagerduty_kept_open": last.get("pagerduty_kept_open")}


def _job_brief(job: Mapping[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in ("id", "kind", "action", "state", "attempts", "last_error", "reason",
                                    "created_at", "next_attempt_at", "delivered_at")}


def _state_text(job: Mapping[str, Any]) -> str:
    state = job["state"]
    if state in ("delivered", "dry_run"):
        return f"{'sent' if state == 'delivered' else 'printed (dry run)'} at {_when(job.get('delivered_at'))}"
    if state == "pending":
        return f"due at {_when(job.get('next_attempt_at'))}"
    if state == "dead":
        return f"a dead letter after {job.get('attempts')} attempt(s): {job.get('last_error') or '-'}"
    return str(state)


def _when(iso: Any) -> str:
    """An ISO time as `2026-12-01 12:00:00 UTC`; '-' for none."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(str(iso)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(iso)


# -- the lines ----------------------------------------------------------------------------------------------------


def _lines(story: Mapping[str, Any]) -> list[str]:
    a = story["alert"]
    rule = story["rule"]
    lines = [f"alert {a['id']}: {a['title']}  [{a['source']}, {a['state']}, received {_when(a['received_at'])}]",
             f"verdict: {story['verdict']}",
             f"decision: {rule['action']} {rule['severity'] or 'without a severity'}"
             + (f" by rule {rule['name']}" if rule["name"] else ", no rule applied")
             + (f", urgency {rule['urgency']}" if rule.get("urgency") else "")
             + (f", roles {', '.join(rule['roles'])}" if rule.get("roles") else ""),
             f"  rules: {rule['ruleset']['note']}"]
    if rule["ruleset"].get("differs"):
        lines.append(f"  note: {rule['ruleset']['differs']}")
    values = rule.get("dimension_values") or rule.get("dimensions") or {}
    if values:
        lines.append("  dimensions: " + ", ".join(f"{k}={float(v):g}" for k, v in values.items()))
    if values or rule.get("thresholds_crossed"):
        crossed = rule.get("thresholds_crossed") or {}
        lines.append("  thresholds crossed: " + (", ".join(f"{k}: {v}" for k, v in crossed.items()) or "none"))
    for considered in rule.get("rules_considered") or []:
        mark = "applied" if considered["applied"] else ("matched" if considered["matched"] else "no match")
        detail = "" if considered["matched"] else "  (" + "; ".join(considered["failed_conditions"]) + ")"
        lines.append(f"  - {considered['rule']}: {mark}{detail}")
    if rule.get("why_not_paged"):
        lines.append("  why not paged: " + "; ".join(rule["why_not_paged"]))
    if rule.get("reasons"):
        lines.append("  reasons: " + "; ".join(rule["reasons"]))
    silence = story.get("silence")
    if silence:
        lines.append(f"silence: {silence['id']} owned by {silence['owner']} ({silence['reason']}), "
                     f"{silence.get('description') or ', '.join(silence.get('matchers') or [])}, until "
                     f"{_when(silence.get('ends_at'))}"
                     + (f", expired at {_when(silence['expired_at'])}" if silence.get("expired_at") else "")
                     + (f"; created by {silence['created_by']}" if silence.get("created_by") else ""))
    if story.get("inhibition"):
        inh = story["inhibition"]
        lines.append(f"inhibition: by incident {inh['incident']} ({inh['severity'] or '-'}, rule {inh['rule'] or '-'})")
    if story.get("storm"):
        storm = story["storm"]
        digest = storm.get("digest")
        lines.append(f"storm: attached to incident {storm['incident']} of rule {storm['rule'] or '-'}; "
                     + (f"digest job {digest['id']} {_state_text(digest)}" if digest else "no digest job found"))
    if story.get("flap"):
        flap = story["flap"]
        if flap["pending_seconds"]:
            text = f"flap window: pages held back {flap['pending_seconds']} s"
            if flap["page_due_at"]:
                text += f", page due at {_when(flap['page_due_at'])}"
        else:
            text = "flap window: the incident recovered inside its pending window"
        lines.append(text + ("; the page was dropped" if flap["dropped"] else ""))
    if story.get("reopen"):
        reopen = story["reopen"]
        lines.append(f"reopen: incident {reopen['incident']} had resolved at {_when(reopen['resolved_at'])}; "
                     "it reopened instead of a new incident")
    incident = story.get("incident")
    if incident:
        pd = incident.get("pagerduty") or {}
        lines.append(f"incident: {incident['id']} {incident['status']} {incident['severity'] or '-'} "
                     f"\"{incident['title']}\"" + (f", PagerDuty {pd['id']} {pd.get('html_url') or ''}".rstrip()
                                                   if pd.get("id") else ""))
    if story.get("timeline"):
        lines.append("timeline:")
        lines.extend(f"  - [{t['kind']}] {t['description']}" for t in story["timeline"])
    if story.get("delivery"):
        lines.append("delivery:")
        for job in story["delivery"]:
            lines.append(f"  - job {job['id']} {job['action']}: {_state_text(job)}"
                         + (f" ({job['attempts']} attempt(s))" if job["state"] == "delivered" else ""))
    return lines


def format_story(story: Story) -> str:
    """The CLI's text: one fact a line."""
    return "\n".join(story.lines) + "\n"
