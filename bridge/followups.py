"""Follow-ups: what happens after a page went out, each step a persisted outbox job.

- `incident_setup` (after a trigger of a declared incident, P0/P1 by default, and of security incidents):
  find the PagerDuty incident, set its priority and urgency, note the role assignment with each role's duties
  and the decision's reasons, request a responder for every role, and arm the escalation timers.
- `escalation_check` (a timer): the process says the Incident Coordinator and Communications Lead must be
  reached; when their request is not accepted in time, request their backup and note it.
- `related_note`: related past incidents, noted on the PagerDuty incident (after the page, never before).
- `storm_digest`: one note summarising the alerts of a storm.
- `auto_resolve` (a timer): resolve an incident whose source never sends recoveries.
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
from bridge.errors import DeliveryError
from bridge.model import Severity
from bridge.postmortem import custom_template, needs_postmortem, render_postmortem
from bridge.rules.holder import RulesetHolder
from bridge.rules.model import Ruleset
from bridge.store import Store

log = logging.getLogger(__name__)


class Rest(Protocol):
    """The PagerDuty REST steps the follow-ups need (see bridge.delivery.pagerduty_rest)."""

    def find_incident(self, dedup_key: str) -> dict[str, Any] | None: ...
    def priority_for(self, severity: str, names: Any) -> str | None: ...
    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str) -> Any: ...
    def resolve_target(self, target: Any) -> tuple[str, str]: ...
    def request_responders(self, incident_id: str, targets: list[tuple[str, str]], message: str) -> Any: ...
    def responder_state(self, incident_id: str, target: tuple[str, str]) -> str: ...
    def add_note(self, incident_id: str, content: str, marker: str) -> bool: ...


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
            "postmortem": self.postmortem,
        }

    def handle(self, job: dict[str, Any]) -> None:
        """Run the job's handler."""
        handler = self.handlers.get(job["kind"])
        if handler is None:
            raise DeliveryError(f"unknown job kind {job['kind']!r}", retryable=False, reason="unexpected_status")
        handler(job)

    # -- after a trigger ----------------------------------------------------------------------------------

    def after_trigger(self, job: dict[str, Any]) -> None:
        """Queue the set-up of the incident a delivered trigger paged.

        Declared incidents (P0/P1) and security incidents get roles; with the REST API every incident also
        gets the urgency of its severity set explicitly (P2/P3 low: never a page at night).
        """
        incident_id = job.get("incident_id")
        if incident_id is None:
            return
        details = ((job.get("payload") or {}).get("payload") or {}).get("custom_details") or {}
        sev_name = details.get("severity")
        severity = Severity.parse(sev_name) if sev_name else None
        ruleset = self.holder.current
        categories = set(details.get("categories") or ())
        engages_roles = declared(ruleset, severity) or bool(categories & {"security", "breach"})
        if severity is None or not (engages_roles or self.rest is not None):
            return
        marker = f'"severity": "{sev_name}"'
        if self.store.has_job(incident_id, "incident_setup", marker):
            return
        self.store.enqueue("incident_setup", job["dedup_key"], incident_id,
                           {"severity": sev_name, "roles": details.get("roles") or [],
                            "reasons": details.get("reasons") or [], "rule": details.get("rule"),
                            "categories": sorted(categories)}, self.clock(), priority=1)

    def _pd_incident(self, incident: dict[str, Any]) -> tuple[str, str | None]:
        """The PagerDuty incident of ours: known already, or found by its incident key (our dedup key)."""
        pd = incident.get("pagerduty") or {}
        if pd.get("id"):
            return pd["id"], pd.get("html_url")
        assert self.rest is not None
        found = self.rest.find_incident(incident["dedup_key"])
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
                self._arm_escalations(incident, ruleset, wanted, now)
        if is_declared and not self.store.has_job(incident["id"], "related_note"):
            self.store.enqueue("related_note", incident["dedup_key"], incident["id"], {}, now, priority=6)

    def _arm_escalations(self, incident: dict[str, Any], ruleset: Ruleset, roles: list[str], now: float) -> None:
        for role in roles:
            spec = ruleset.roles.get(role)
            if spec is None or spec.backup is None or not spec.escalate_after_seconds:
                continue
            marker = f'"role": "{role}"'
            if self.store.has_job(incident["id"], "escalation_check", marker):
                continue
            self.store.enqueue("escalation_check", incident["dedup_key"], incident["id"],
                               {"role": role, "after": spec.escalate_after_seconds}, now,
                               now + spec.escalate_after_seconds, priority=1)

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
        titles: dict[str, int] = {}
        for a in attached:
            titles[a["title"]] = titles.get(a["title"], 0) + 1
        top = sorted(titles.items(), key=lambda kv: -kv[1])[:10]
        text = (f"Alert storm: {len(attached)} alerts of rule {incident['rule']} attached to this incident "
                "instead of paging separately.\n" + "\n".join(f"- {n} x {t}" for t, n in top))
        now = self.clock()
        self.store.add_timeline(incident["id"], now, "note", f"storm digest: {len(attached)} alerts attached",
                                "incident-bridge")
        if self.rest is not None and self.store.triggers_delivered(incident["id"]):
            pd_id, _ = self._pd_incident(incident)
            self.rest.add_note(pd_id, text, f"[incident-bridge:storm:{incident['id']}:{len(attached)}]")

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
        if incident is None:
            return
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
        link = f"{self.settings.public_url}/api/v1/incidents/{incident['id']}/postmortem" \
            if self.settings.public_url else f"/api/v1/incidents/{incident['id']}/postmortem on the bridge"
        self.store.add_timeline(incident["id"], now, "note", "post-mortem draft written", "incident-bridge")
        if self.rest is not None and (incident.get("pagerduty") or {}).get("id"):
            self.rest.add_note(incident["pagerduty"]["id"],
                               f"Post-mortem draft ready: {link} (or `incident-bridge postmortem "
                               f"{incident['dedup_key']}`).", f"[incident-bridge:postmortem:{incident['id']}]")


class Reschedule(Exception):
    """A timer fired early (new alerts moved its deadline): run the job again at `due`."""

    def __init__(self, due: float) -> None:
        super().__init__(f"rescheduled to {due}")
        self.due = due


def _immediate_roles(ruleset: Ruleset, categories: set[str]) -> set[str]:
    """Roles engaged immediately at any severity (InfoSec for security)."""
    out: set[str] = set()
    for cat in categories & {"security", "breach"}:
        out.update(ruleset.paging.category_roles.get(cat, ()))
    return out


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
