"""Follow-ups: what happens after a page went out, each step a persisted outbox job.

- `incident_setup` (after a trigger of a declared incident, P0/P1 by default, and of security incidents):
  find the PagerDuty incident, set its priority and urgency, note the role assignment with each role's duties
  and the decision's reasons, request a responder for every role, and arm the escalation timers.
- `escalation_check` (a timer): the process says the Incident Coordinator and Communications Lead must be
  reached; when their request is not accepted in time, request their backup and note it.
- `related_note`: related past incidents, noted on the PagerDuty incident (after the page, never before).
- `storm_digest`: one note summarising the alerts of a storm.
- `auto_resolve` (a timer): resolve an incident whose source never sends recoveries.
- `resolution_note` (queued with each resolution): the process's resolution checklist for a declared incident,
  addressed to the roles that hold each step, with the final stakeholder update (sent as a PagerDuty status
  update when the rules opt in, a draft in the note otherwise).
- `reopen_note` (after the trigger of a reopened incident): the resolution did not hold; links the previous
  PagerDuty incident when PagerDuty opened a new one.
- `postmortem`: draft the post-mortem of a resolved P0/P1 incident and note where to find it.

Every step is idempotent (safe to run again after a crash mid-way) and timers are jobs with a due time, so a
restarted bridge still escalates on time. Without `PAGERDUTY_API_TOKEN` the REST steps are skipped and the
timeline says so; the rest still happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.config import Settings
from bridge.errors import DeliveryError, Reschedule
from bridge.model import Severity
from bridge.postmortem import custom_template, needs_postmortem, render_postmortem
from bridge.resolution import (
    CHECKLIST,
    FINAL_UPDATE_STATUS_UPDATE,
    FinalUpdateState,
    PagerDutyRef,
    Reopening,
    final_update_mode,
    final_update_text,
    fired_monitors,
    reopen_note_text,
    resolution_note_text,
)
from bridge.rules.holder import RulesetHolder
from bridge.rules.model import Ruleset
from bridge.store import RESOLUTION_NOTE_DELAY, NewJob, Store

log = logging.getLogger(__name__)


class Rest(Protocol):
    """The PagerDuty REST steps the follow-ups need (see bridge.delivery.pagerduty_rest)."""

    def find_incident(self, dedup_key: str, *, include_resolved: bool = False) -> dict[str, Any] | None: ...
    def priority_for(self, severity: str, names: Any) -> str | None: ...
    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str) -> Any: ...
    def resolve_target(self, target: Any) -> tuple[str, str]: ...
    def request_responders(self, incident_id: str, targets: list[tuple[str, str]], message: str) -> Any: ...
    def responder_state(self, incident_id: str, target: tuple[str, str]) -> str: ...
    def add_note(self, incident_id: str, content: str, marker: str) -> bool: ...
    def create_status_update(self, incident_id: str, message: str) -> str: ...


def declared(ruleset: Ruleset, severity: Severity | None) -> bool:
    """Whether this severity declares an incident (roles assigned at once): P0/P1 by default."""
    if severity is None:
        return False
    level = ruleset.paging.levels.get(severity)
    return bool(level and level.declare)


class FollowUps:
    """Handlers for the follow-up job kinds. `handle(job)` raises DeliveryError to retry or dead-letter, and
    Reschedule to run again later; any other exception is a bug of ours, which the worker retries a bounded
    number of times (`MAX_INTERNAL_FAILURES`) before dead-lettering the job."""

    def __init__(self, store: Store, settings: Settings, holder: RulesetHolder, rest: Rest | None, *,
                 clock: Callable[[], float], related_sources: Callable[[], list[Any]] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.holder = holder
        self.rest = rest
        self.clock = clock
        self.related_sources = related_sources
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "incident_setup": self.incident_setup,
            "escalation_check": self.escalation_check,
            "related_note": self.related_note,
            "storm_digest": self.storm_digest,
            "auto_resolve": self.auto_resolve,
            "resolution_note": self.resolution_note,
            "reopen_note": self.reopen_note,
            "postmortem": self.postmortem,
        }

    def handle(self, job: dict[str, Any]) -> None:
        """Run the job's handler."""
        handler = self.handlers.get(job["kind"])
        if handler is None:
            raise DeliveryError(f"unknown job kind {job['kind']!r}", retryable=False, reason="unexpected_status")
        handler(job)

    # -- after a trigger ----------------------------------------------------------------------------------

    def after_delivery(self, job: dict[str, Any]) -> list[NewJob]:
        """The follow-ups of a delivered job, which the delivery worker queues in the transaction that records the
        delivery: after a trigger, the set-up of the incident it paged (and the reopen note of a reopened one).

        Declared incidents (P0/P1) and security incidents get roles; with the REST API every incident also
        gets the urgency of its severity set explicitly (P2/P3 low: never a page at night). Each follow-up has a
        dedupe key, so a trigger delivered twice (a retry) queues it once.
        """
        incident_id = job.get("incident_id")
        if job.get("kind") != "event" or job.get("action") != "trigger" or incident_id is None:
            return []
        incident = self.store.incident_row(incident_id)
        if incident is None:
            return []
        out: list[NewJob] = []
        reopen = len((incident.get("details") or {}).get("reopens") or [])
        if reopen:
            # This trigger re-opened (or de-duplicated into) the PagerDuty incident: say the resolution did not hold.
            out.append(NewJob("reopen_note", job["dedup_key"], incident_id, {"reopen": reopen}, priority=2,
                              dedupe=f"reopen_note:{incident_id}:{reopen}"))
        # The severity this trigger paged at, from the event the pipeline built out of the decision.
        details = ((job.get("payload") or {}).get("payload") or {}).get("custom_details") or {}
        sev_name = details.get("severity")
        severity = Severity.parse(sev_name) if sev_name else None
        ruleset = self.holder.current
        categories = set(details.get("categories") or ())
        engages_roles = declared(ruleset, severity) or bool(categories & {"security", "breach"})
        if severity is None or not (engages_roles or self.rest is not None):
            return out
        # Once per severity, and again after each reopening: PagerDuty then usually has a new incident, whose
        # roles, note and timers are set up afresh (on the same incident every step finds its work done).
        setup_key = f"{sev_name}:{reopen}"
        out.append(NewJob("incident_setup", job["dedup_key"], incident_id,
                          {"severity": sev_name, "roles": details.get("roles") or [],
                           "reasons": details.get("reasons") or [], "rule": details.get("rule"),
                           "categories": sorted(categories), "reopen": reopen, "setup_key": setup_key},
                          priority=1, dedupe=f"incident_setup:{incident_id}:{setup_key}"))
        return out

    def _pd_incident(self, incident: dict[str, Any], *, include_resolved: bool = False) -> tuple[str, str | None]:
        """The PagerDuty incident of ours: known already, or found by its incident key (our dedup key); with
        `include_resolved`, the newest resolved one when none is open (steps after a resolution)."""
        pd = incident.get("pagerduty") or {}
        if pd.get("id"):
            return pd["id"], pd.get("html_url")
        assert self.rest is not None
        found = self.rest.find_incident(incident["dedup_key"], include_resolved=include_resolved)
        if not found:
            # The Events API creates the incident asynchronously: try again shortly.
            raise DeliveryError("PagerDuty has no incident for this dedup key yet", retryable=True,
                                reason="not_found")
        self.store.set_pagerduty_incident(incident["id"], found["id"], found.get("html_url"))
        return found["id"], found.get("html_url")

    def incident_setup(self, job: dict[str, Any]) -> None:
        """Priority, urgency, the role note, responder requests and escalation timers."""
        payload = job["payload"]
        incident = self.store.incident_row(job["incident_id"])
        if incident is None or incident["status"] != "open":
            return
        ruleset = self.holder.current
        severity = Severity.parse(payload["severity"])
        is_declared = declared(ruleset, severity)
        wanted = list(payload.get("roles") or [])
        if not is_declared:
            # P2/P3 never page at night: only the roles the process engages immediately whatever the severity.
            wanted = [r for r in wanted if r in _immediate_roles(ruleset, set(payload.get("categories") or ()))]
        now = self.clock()
        holders = {role: _holder_text(ruleset, role) for role in wanted}
        if wanted:
            self.store.merge_incident_details(incident["id"], roles_requested=holders)
        if self.rest is None:
            self.store.add_timeline(incident["id"], now, "decision",
                                    "roles to engage: " + ", ".join(wanted) + " (PAGERDUTY_API_TOKEN is not set: "
                                    "no priority, note or responder requests sent)", "incident-bridge")
            return
        pd_id, _url = self._pd_incident(incident)
        priority_id = None
        if is_declared:
            priority_id = self.rest.priority_for(severity.name, ruleset.settings.get("priority_names") or {})
        self.rest.set_priority_and_urgency(pd_id, priority_id, severity.urgency)
        if not wanted:
            return
        note = role_note(ruleset, severity, wanted, payload.get("reasons") or [], payload.get("rule"))
        if self.rest.add_note(pd_id, note, f"[incident-bridge:setup:{incident['id']}:{severity.name}]"):
            self.store.add_timeline(incident["id"], now, "note", f"role assignment noted ({severity.name})",
                                    "incident-bridge", "PagerDuty note")
        targets: list[tuple[str, str]] = []
        for role in wanted:
            spec = ruleset.roles.get(role)
            if spec is None or spec.target is None:
                continue
            targets.append(self.rest.resolve_target(spec.target))
        if targets:
            message = (f"incident-bridge: {severity.name} {incident['title'][:200]}. You are requested as "
                       + ", ".join(wanted) + ". See the incident notes for your duties.")
            outcome = self.rest.request_responders(pd_id, targets, message)
            status = getattr(outcome, "status", str(outcome))
            if status == "unsupported":
                self.store.add_timeline(incident["id"], now, "responder_request",
                                        "responder requests are not available on this PagerDuty account (402): "
                                        "roles are listed in the note only", "incident-bridge")
            else:
                for role in wanted:
                    self.store.add_timeline(incident["id"], now, "responder_request",
                                            f"{role} requested: {holders[role]}", holders[role],
                                            "PagerDuty responder request")
                self._arm_escalations(incident, ruleset, wanted, now, reopen=int(payload.get("reopen") or 0))
        if is_declared:
            self.store.enqueue("related_note", incident["dedup_key"], incident["id"], {}, now, priority=6,
                               dedupe=f"related_note:{incident['id']}")

    def _arm_escalations(self, incident: dict[str, Any], ruleset: Ruleset, roles: list[str], now: float, *,
                         reopen: int = 0) -> None:
        for role in roles:
            spec = ruleset.roles.get(role)
            if spec is None or spec.backup is None or not spec.escalate_after_seconds:
                continue
            # A reopened incident's roles are requested again, so their timers run again.
            payload: dict[str, Any] = {"role": role, "after": spec.escalate_after_seconds}
            if reopen:
                payload = {"reopen": reopen, **payload}
            self.store.enqueue("escalation_check", incident["dedup_key"], incident["id"], payload, now,
                               now + spec.escalate_after_seconds, priority=1,
                               dedupe=f"escalation_check:{incident['id']}:{reopen}:{role}")

    def escalation_check(self, job: dict[str, Any]) -> None:
        """Request the backup of a role whose request was not accepted in time, and note it."""
        incident = self.store.incident_row(job["incident_id"])
        if incident is None or incident["status"] != "open" or self.rest is None:
            return
        role = job["payload"]["role"]
        ruleset = self.holder.current
        spec = ruleset.roles.get(role)
        if spec is None or spec.target is None or spec.backup is None:
            return
        pd_id, _ = self._pd_incident(incident)
        state = self.rest.responder_state(pd_id, self.rest.resolve_target(spec.target))
        now = self.clock()
        if state == "accepted":
            self.store.add_timeline(incident["id"], now, "acknowledgement", f"{role} accepted the request",
                                    _holder_text(ruleset, role))
            return
        backup = self.rest.resolve_target(spec.backup)
        minutes = max(1, round(job["payload"].get("after", 0) / 60))
        self.rest.request_responders(pd_id, [backup], f"incident-bridge: the {role} did not accept within "
                                     f"{minutes} min; you are requested as their backup.")
        text = (f"Escalation: the {role} ({spec.target.describe()}) did not accept within {minutes} min "
                f"(state: {state}). Requested the backup, {spec.backup.describe()}. The process: when the EM or "
                "PM is unreachable, the Senior Developer must reach them as soon as possible.")
        self.rest.add_note(pd_id, text, f"[incident-bridge:escalation:{incident['id']}:{role}]")
        self.store.add_timeline(incident["id"], now, "escalation", text, spec.backup.describe(),
                                "PagerDuty responder request (backup)")

    # -- notes ----------------------------------------------------------------------------------------------

    def related_note(self, job: dict[str, Any]) -> None:
        """Look up related past incidents and note the top 5 on the PagerDuty incident."""
        from bridge.lookups import related_for_incident, related_to_details
        from bridge.related import format_note

        incident = self.store.incident_row(job["incident_id"])
        if incident is None:
            return
        sources = self.related_sources() if self.related_sources else None
        result = related_for_incident(self.store, self.settings, incident,
                                      now=datetime.fromtimestamp(self.clock(), tz=UTC), sources=sources)
        self.store.merge_incident_details(incident["id"], related=related_to_details(result),
                                          related_missing=[list(m) for m in result.missing_sources])
        now = self.clock()
        self.store.add_timeline(incident["id"], now, "note",
                                f"related incidents looked up: {len(result.results)} found"
                                + (f"; missing sources: {', '.join(n for n, _ in result.missing_sources)}"
                                   if result.missing_sources else ""), "incident-bridge")
        if self.rest is not None and result.results:
            pd_id, _ = self._pd_incident(incident)
            self.rest.add_note(pd_id, format_note(result), f"[incident-bridge:related:{incident['id']}]")

    def storm_digest(self, job: dict[str, Any]) -> None:
        """One note summarising the alerts attached to a storm incident."""
        incident = self.store.incident_row(job["incident_id"])
        if incident is None:
            return
        attached = [a for a in self.store.incident_alerts(incident["id"]) if a["outcome"] == "storm"]
        text = storm_digest_text(incident.get("rule"), [a.get("alert") or {} for a in attached])
        now = self.clock()
        self.store.add_timeline(incident["id"], now, "note", f"storm digest: {len(attached)} alerts attached",
                                "incident-bridge")
        if self.rest is not None and self.store.triggers_delivered(incident["id"]):
            pd_id, _ = self._pd_incident(incident)
            self.rest.add_note(pd_id, text, f"[incident-bridge:storm:{incident['id']}:{len(attached)}]")

    # -- closing the loop: resolution checklist, final update, reopening --------------------------------------

    def resolution_note(self, job: dict[str, Any]) -> None:
        """The process's resolution steps for a declared incident, one note addressed to the roles that hold them,
        with the final stakeholder update: sent first as a PagerDuty status update when the rules opt in
        (`final_update: status_update`), else (and on a 402) a draft inside the note.

        Idempotent: the note carries a marker per resolution; the status update, which PagerDuty cannot list
        back, is recorded in the incident's details (`stakeholder_update`) as soon as PagerDuty accepts it and is
        never sent twice for one resolution (a crash between PagerDuty's answer and that write is the only window).
        """
        from bridge.lookups import postmortem_facts

        incident = self.store.incident_row(job["incident_id"])
        if incident is None:
            return
        number = int(job["payload"].get("resolution") or 1)
        now = self.clock()
        if incident["status"] != "resolved":
            self.store.add_timeline(incident["id"], now, "resolution_note", f"resolution checklist {number} not "
                                    "posted: the incident reopened before it went out", "incident-bridge")
            return
        ruleset = self.holder.current
        severity = Severity.parse(incident["severity"]) if incident.get("severity") else None
        if not declared(ruleset, severity):
            return
        details = incident.get("details") or {}
        recorded = details.get("roles_requested") or {}
        holders = {role: recorded.get(role) or _holder_text(ruleset, role) for role, _ in CHECKLIST}
        facts = postmortem_facts(self.store, incident)
        draft = final_update_text(facts, reopens=len(details.get("reopens") or []))
        mode = final_update_mode(ruleset.settings, _rule_extra(ruleset, incident.get("rule")))
        if self.rest is None:
            self.store.merge_incident_details(incident["id"], stakeholder_update={
                "resolution": number, "mode": mode, "state": "skipped", "text": draft})
            self.store.add_timeline(incident["id"], now, "resolution_note", "resolution checklist not posted "
                                    "(PAGERDUTY_API_TOKEN is not set: REST steps skipped)", "incident-bridge")
            self.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update drafted, not "
                                    "sent (PAGERDUTY_API_TOKEN is not set); the draft is in the incident's details",
                                    "incident-bridge")
            return
        if not self.store.triggers_delivered(incident["id"]):
            self.store.add_timeline(incident["id"], now, "resolution_note", "resolution checklist not posted: no "
                                    "page of this incident reached PagerDuty", "incident-bridge")
            return
        if self.store.event_unfinished(incident["id"], "resolve"):
            raise Reschedule(now + RESOLUTION_NOTE_DELAY)  # after the resolve, never on a still-open incident
        pd_id, _ = self._pd_incident(incident, include_resolved=True)
        state = self._final_update(incident, pd_id, number, mode, draft, holders, now)
        note = resolution_note_text(facts, holders=holders, monitors=fired_monitors(
            self.store.incident_alerts(incident["id"])), final_update=state, draft=draft,
            postmortem_link=self._postmortem_link(incident), resolution=number)
        if self.rest.add_note(pd_id, note, f"[incident-bridge:resolution:{incident['id']}:{number}]"):
            self.store.add_timeline(incident["id"], now, "resolution_note",
                                    "resolution checklist noted for the " + ", ".join(r for r, _ in CHECKLIST),
                                    "; ".join(f"{role}: {holders[role]}" for role, _ in CHECKLIST),
                                    "PagerDuty note")

    def _final_update(self, incident: dict[str, Any], pd_id: str, number: int, mode: str, draft: str,
                      holders: dict[str, str], now: float) -> FinalUpdateState:
        """Send (or keep as a draft) the final stakeholder update of resolution `number`; what became of it."""
        prior = (incident.get("details") or {}).get("stakeholder_update") or {}
        if prior.get("resolution") == number and prior.get("state") in ("sent", "unsupported", "refused", "drafted"):
            return prior["state"]  # type: ignore[no-any-return]  # a retry: decided (and sent) already
        assert self.rest is not None
        state: FinalUpdateState = "drafted"
        refusal = ""
        if mode == FINAL_UPDATE_STATUS_UPDATE:
            try:
                state = "sent" if self.rest.create_status_update(pd_id, draft) == "sent" else "unsupported"
            except DeliveryError as exc:
                if exc.retryable:
                    raise  # 429, 5xx, network: the job is retried, and nothing was recorded as sent
                # A lasting refusal (an account may answer 403 rather than 402 for a missing entitlement) must not
                # keep the checklist from the roles: the update falls back to the note, like a 402.
                state, refusal = "refused", exc.message
                log.warning("incident %s: the final stakeholder update was refused as a status update; it stays a "
                            "draft in the resolution note: %s", incident["id"], exc.message)
        self.store.merge_incident_details(incident["id"], stakeholder_update={
            "resolution": number, "mode": mode, "state": state, "text": draft,
            "at": datetime.fromtimestamp(now, tz=UTC).isoformat()})
        comms = holders.get("Communications Lead", "")
        if state == "sent":
            self.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update sent as a "
                                    "PagerDuty status update", comms, "PagerDuty status update")
        elif state == "refused":
            self.store.add_timeline(incident["id"], now, "final_update", "warning: PagerDuty refused the final "
                                    f"stakeholder update as a status update ({refusal}); the draft is in the "
                                    "resolution note for the Communications Lead", comms,
                                    "drafted in the resolution note")
        elif state == "unsupported":
            # The one warning of this incident (the client logs one per process, see Abilities): never retried.
            self.store.add_timeline(incident["id"], now, "final_update", "warning: the final stakeholder update "
                                    "was not sent as a status update: this PagerDuty account lacks the ability "
                                    "(HTTP 402); the draft is in the resolution note for the Communications Lead",
                                    comms, "drafted in the resolution note")
        else:
            self.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update drafted in the "
                                    "resolution note (final_update: note)", comms, "drafted in the resolution note")
        return state

    def reopen_note(self, job: dict[str, Any]) -> None:
        """Say on PagerDuty that the resolution did not hold, linking the previous PagerDuty incident when
        PagerDuty opened a new one for the same dedup key (a resolved incident cannot reopen there)."""
        incident = self.store.incident_row(job["incident_id"])
        if incident is None:
            return
        number = int(job["payload"]["reopen"])
        reopens = (incident.get("details") or {}).get("reopens") or []
        if not 0 < number <= len(reopens):
            return
        entry = reopens[number - 1]
        previous = entry.get("pagerduty") or {}
        reopening = Reopening(number, datetime.fromisoformat(entry["at"]),
                              datetime.fromisoformat(entry["resolved_at"]) if entry.get("resolved_at") else None,
                              PagerDutyRef(previous["id"], previous.get("html_url") or "") if previous.get("id")
                              else None, bool(entry.get("pagerduty_kept_open")))
        now = self.clock()
        if self.rest is None:
            self.store.add_timeline(incident["id"], now, "note", "reopening not noted on PagerDuty "
                                    "(PAGERDUTY_API_TOKEN is not set: REST steps skipped)", "incident-bridge")
            return
        # While open, only an open PagerDuty incident is ours (the previous one is resolved); resolved again
        # meanwhile, the newest one.
        pd_id, _ = self._pd_incident(incident, include_resolved=incident["status"] != "open")
        if reopening.previous is not None and reopening.previous.id == pd_id:
            reopening = Reopening(number, reopening.at, reopening.resolved_at, reopening.previous, kept_open=True)
        text = reopen_note_text(incident["title"], reopening, severity=incident.get("severity") or "-")
        if self.rest.add_note(pd_id, text, f"[incident-bridge:reopen:{incident['id']}:{number}]"):
            where = "on the same PagerDuty incident" if reopening.kept_open else (
                f"on the new PagerDuty incident {pd_id}; previous one: {reopening.previous.id}"
                if reopening.previous is not None else f"on PagerDuty incident {pd_id}")
            self.store.add_timeline(incident["id"], now, "note", f"resolution did not hold: noted {where}",
                                    "incident-bridge", "PagerDuty note")

    def _postmortem_link(self, incident: dict[str, Any]) -> str:
        """Where the post-mortem draft is: the API URL under BRIDGE_PUBLIC_URL when set."""
        path = f"/api/v1/incidents/{incident['id']}/postmortem"
        return f"{self.settings.public_url}{path}" if self.settings.public_url else f"{path} on the bridge"

    # -- reconciliation -----------------------------------------------------------------------------------

    def reconcile(self, days: float = 7.0) -> int:
        """Compare the incidents we believe open (or resolved) with PagerDuty and repair drift. Run at start.

        - open here, but PagerDuty has no open incident for the dedup key: a human resolved it there; mark it
          resolved here too (and draft the post-mortem);
        - resolved here, but open in PagerDuty: our resolve was lost (a crash, a dead-lettered event); send
          it again.
        Returns the number of incidents repaired.
        """
        if self.rest is None:
            return 0
        now = self.clock()
        repaired = 0
        for incident in self.store.recent_incidents(now - days * 86400):
            if not self.store.triggers_delivered(incident["id"]):
                continue
            open_there = self.rest.find_incident(incident["dedup_key"])
            if incident["status"] == "open" and open_there is None:
                if self.store.resolve_incident(incident["id"], now, "resolved in PagerDuty (found by "
                                               "reconciliation at start)", send_resolve=False):
                    repaired += 1
            elif incident["status"] == "resolved" and open_there is not None \
                    and self.store.last_event_action(incident["id"]) != "resolve":
                self.store.enqueue("event", incident["dedup_key"], incident["id"],
                                   {"event_action": "resolve", "dedup_key": incident["dedup_key"]}, now,
                                   action="resolve", priority=0)
                self.store.add_timeline(incident["id"], now, "resolution", "resolve re-sent: PagerDuty still "
                                        "had the incident open (found by reconciliation at start)",
                                        "incident-bridge")
                repaired += 1
        if repaired:
            log.warning("reconciliation repaired %d incident(s)", repaired)
        return repaired

    # -- timers -------------------------------------------------------------------------------------------

    def auto_resolve(self, job: dict[str, Any]) -> None:
        """Resolve an incident whose source never sends recoveries, once no alert came for the rule's time."""
        incident = self.store.incident_row(job["incident_id"])
        if incident is None or incident["status"] != "open":
            return
        details = incident.get("details") or {}
        after = float(details.get("auto_resolve_seconds") or 0)
        last = datetime.fromisoformat(incident["last_alert_at"]).timestamp()
        now = self.clock()
        if after and now < last + after:
            raise Reschedule(last + after)
        self.store.resolve_incident(incident["id"], now,
                                    f"auto-resolved: no alert for {int(after)}s and the source sends no recovery",
                                    send_resolve=True)

    def postmortem(self, job: dict[str, Any]) -> None:
        """Draft the post-mortem of a resolved incident when the process asks for one, and note the link."""
        from bridge.lookups import postmortem_facts

        incident = self.store.incident_row(job["incident_id"])
        if incident is None or incident["status"] != "resolved":
            return  # reopened before the draft was due: the next resolution queues it again
        ruleset = self.holder.current
        facts = postmortem_facts(self.store, incident)
        p2_flag = bool(ruleset.settings.get("postmortem_p2")) or any(
            (rule.extra.get("postmortem") and rule.name in facts.rules) for rule in ruleset.rules)
        if not needs_postmortem(facts.peak_severity, p2_flag=p2_flag):
            return
        # custom_template refuses a template outside the rules directory, even if the ruleset holds one.
        template, template_name = custom_template(self.holder.path, ruleset.settings.get("postmortem_template"))
        now = self.clock()
        markdown = render_postmortem(facts, template, now=datetime.fromtimestamp(now, tz=UTC),
                                     template_name=template_name)
        self.store.save_postmortem(incident["id"], markdown, now)
        link = self._postmortem_link(incident)
        self.store.add_timeline(incident["id"], now, "note", "post-mortem draft written", "incident-bridge")
        if self.rest is not None and (incident.get("pagerduty") or {}).get("id"):
            self.rest.add_note(incident["pagerduty"]["id"],
                               f"Post-mortem draft ready: {link} (or `incident-bridge postmortem "
                               f"{incident['dedup_key']}`).", f"[incident-bridge:postmortem:{incident['id']}]")




def _immediate_roles(ruleset: Ruleset, categories: set[str]) -> set[str]:
    """Roles engaged immediately at any severity (InfoSec for security)."""
    out: set[str] = set()
    for cat in categories & {"security", "breach"}:
        out.update(ruleset.paging.category_roles.get(cat, ()))
    return out


def _rule_extra(ruleset: Ruleset, name: str | None) -> dict[str, Any] | None:
    """The extra settings (`final_update`, ...) of the rule named `name`, if the ruleset still has it."""
    for rule in ruleset.rules:
        if rule.name == name:
            return dict(rule.extra)
    return None


def _holder_text(ruleset: Ruleset, role: str) -> str:
    spec = ruleset.roles.get(role)
    if spec is None or spec.target is None:
        return "no target configured"
    return spec.target.describe()


def role_note(ruleset: Ruleset, severity: Severity, roles: list[str], reasons: list[str], rule: str | None) -> str:
    """The note that states the role assignment, each role's duties, and why the bridge paged."""
    level = ruleset.paging.levels.get(severity)
    lines = [f"incident-bridge declared this a {severity.name} incident"
             + (f" ({level.response})" if level and level.response else "") + ".", "", "Role assignment:"]
    for role in roles:
        spec = ruleset.roles.get(role)
        holder = _holder_text(ruleset, role)
        duties = spec.duties if spec and spec.duties else ""
        lines.append(f"- {role}: {holder}" + (f". {duties}" if duties else ""))
    lines += ["", f"Why: rule {rule or '-'}"]
    lines += [f"- {r}" for r in reasons]
    return "\n".join(lines)


# How many hosts and titles a storm digest names; the rest are counted.
DIGEST_LINES = 20


def alert_host(alert: dict[str, Any]) -> str:
    """The host an alert (as stored, `Alert.to_dict`) fired on: the source's hostname, a `host:` tag, or its scope."""
    fields = alert.get("fields") or {}
    if fields.get("hostname"):
        return str(fields["hostname"])
    for tag in alert.get("tags") or []:
        key, value = (tag[0], tag[1]) if isinstance(tag, (list, tuple)) else (str(tag).partition(":")[::2])
        if key == "host" and value:
            return str(value)
    return str(fields.get("scope") or "")


def storm_digest_text(rule: str | None, alerts: list[dict[str, Any]]) -> str:
    """The storm digest note: how many alerts attached, on which hosts (with counts) and with which titles."""
    hosts: dict[str, int] = {}
    titles: dict[str, int] = {}
    for alert in alerts:
        host = alert_host(alert)
        if host:
            hosts[host] = hosts.get(host, 0) + 1
        title = str(alert.get("title") or "")
        titles[title] = titles.get(title, 0) + 1
    lines = [f"Alert storm: {len(alerts)} alerts of rule {rule or '-'} attached to this incident instead of paging "
             "separately."]
    if hosts:
        lines.append(f"Hosts ({len(hosts)}):")
        lines += _counted(hosts)
    lines.append(f"Alerts ({len(titles)} distinct titles):")
    lines += _counted(titles)
    return "\n".join(lines)


def _counted(counts: dict[str, int]) -> list[str]:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [f"- {name}: {n}" for name, n in top[:DIGEST_LINES]]
    if len(top) > DIGEST_LINES:
        out.append(f"- and {len(top) - DIGEST_LINES} more ({sum(n for _, n in top[DIGEST_LINES:])} alerts)")
    return out
