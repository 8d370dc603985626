"""Closing the loop of the process (docs/incident-process.md, "Resolution").

When a declared incident resolves, the process still asks four things of four roles:

- Platform Engineering (the Infrastructure Lead) monitors infrastructure metrics and deployment health to confirm
  the resolution is stable;
- the product team (the Technical Lead) verifies the resolution from a user-facing perspective;
- the EM and PM provide a final update to all stakeholders (the Communications Lead sends it);
- a post-mortem meeting is held with everyone involved, Platform Engineering included (the Incident Coordinator
  schedules it).

This module writes the texts for that, from what the bridge recorded: the resolution checklist note addressed to
those roles, the final stakeholder update (sent as a PagerDuty status update when the rules opt in, otherwise a
draft inside the note), and the note that says a resolution did not hold when the incident reopens.

Everything here is pure: values in, text out; no clock, store, network or environment reads. The follow-ups
(`bridge.followups.resolution` and `bridge.followups.reopen`) gather the values and post the texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from bridge.model import CLOUD_COST_INCREASE_PCT, CUSTOMERS_AFFECTED_PCT, USERS_AFFECTED_PCT, display_title
from bridge.postmortem import IncidentFacts, format_amount, format_datetime, format_duration, format_pct

# How the final stakeholder update goes out (`settings.final_update`, or a rule's `final_update`):
# `note` keeps it a draft inside the resolution note (the default: a status update notifies every subscriber of
# the incident, which a team should choose knowingly); `status_update` sends it as a PagerDuty status update.
FINAL_UPDATE_NOTE = "note"
FINAL_UPDATE_STATUS_UPDATE = "status_update"
FINAL_UPDATE_MODES = (FINAL_UPDATE_NOTE, FINAL_UPDATE_STATUS_UPDATE)

# What became of the final update of one resolution: left a draft by choice, sent, refused by PagerDuty for a
# missing ability (HTTP 402) or for another lasting reason (403, 404, 400: the timeline says which), or not
# attempted because the REST API is not configured.
FinalUpdateState = Literal["drafted", "sent", "unsupported", "refused", "skipped"]

# The process's resolution steps, each with the role that holds it, in the process's order.
CHECKLIST: tuple[tuple[str, str], ...] = (
    ("Infrastructure Lead", "confirm the resolution is stable on infrastructure metrics and deployment health."),
    ("Technical Lead", "verify the resolution from the user's side."),
    ("Communications Lead", "send the final update to all stakeholders."),
    ("Incident Coordinator", "schedule the post-mortem meeting with everyone involved, Platform Engineering "
                             "included."),
)

# Words for the shipped dimensions, in the process's terms (its severity table: user, customer, financial impact).
_DIMENSION_WORDS = {USERS_AFFECTED_PCT: "users", CUSTOMERS_AFFECTED_PCT: "customers"}


@dataclass(frozen=True)
class MonitorRef:
    """A Datadog monitor that fired for the incident: its id, the alert's title, and its page when known."""

    monitor_id: str
    title: str
    url: str = ""


@dataclass(frozen=True)
class PagerDutyRef:
    """A PagerDuty incident the bridge knew: its id and its web page, when known."""

    id: str
    url: str = ""


@dataclass(frozen=True)
class Reopening:
    """One reopening of an incident: the `number`-th, at `at`, undoing the resolution at `resolved_at`.

    `previous` is the PagerDuty incident of that resolution (None when the bridge never knew it); `kept_open` says
    PagerDuty's incident never resolved (the resolve was still queued and was dropped), so no new one was opened.
    """

    number: int
    at: datetime
    resolved_at: datetime | None
    previous: PagerDutyRef | None = None
    kept_open: bool = False


def _oneline(text: object) -> str:
    return " ".join(str(text or "").split())


def final_update_mode(default: str | None, rule_extra: Mapping[str, Any] | None = None) -> str:
    """`note` or `status_update`: the incident's rule's `final_update` when it sets one, else the ruleset's
    `settings.final_update` (`default`), else `note` (the rules loader has already refused any other value)."""
    for mode in ((rule_extra or {}).get("final_update"), default):
        if mode in FINAL_UPDATE_MODES:
            return str(mode)
    return FINAL_UPDATE_NOTE


def fired_monitors(alerts: Iterable[Mapping[str, Any]]) -> tuple[MonitorRef, ...]:
    """The Datadog monitors whose firing alerts the incident recorded, first seen first, each once.

    `alerts` are stored alerts as `Store.incident_alerts` returns them (the normalized alert under `"alert"`).
    A monitor is known by the receiver's "Datadog monitor" link (which carries the org's own Datadog host), else
    by the `monitor_id` field of a Datadog alert, without a link. Recoveries are not firings; other sources have
    no monitors.
    """
    found: list[MonitorRef] = []
    seen: set[str] = set()
    for stored in alerts:
        alert = stored.get("alert") or {}
        if (alert.get("state") or stored.get("state")) != "firing":
            continue
        fields = alert.get("fields") or {}
        monitor_id = str(fields.get("monitor_id") or "")
        links = [li for li in alert.get("links") or [] if li.get("text") == "Datadog monitor"
                 or "/monitors/" in str(li.get("href", ""))]
        if links:
            url = str(links[0]["href"])
            key = url
            monitor_id = monitor_id or url.rstrip("/").rsplit("/", 1)[-1]
        elif monitor_id and alert.get("source") == "datadog":
            url, key = "", f"datadog:{monitor_id}"
        else:
            continue
        if key in seen:
            continue
        seen.add(key)
        # The sender's status tags ("[P1] [Triggered]") would put a second priority beside the incident's.
        found.append(MonitorRef(monitor_id, _oneline(display_title(str(alert.get("title") or stored.get("title")
                                                                       or ""))), url))
    return tuple(found)


def impact_text(facts: IncidentFacts) -> str:
    """The impact in the process's terms, from whatever the monitors recorded: users and customers affected (%),
    the unexpected cloud-cost increase (% and amounts), and any other dimension by its name."""
    parts: list[str] = []
    dims = dict(facts.dimensions)
    for name in (USERS_AFFECTED_PCT, CUSTOMERS_AFFECTED_PCT):
        if name in dims:
            parts.append(f"{format_pct(dims.pop(name))} of {_DIMENSION_WORDS[name]} affected")
    cost_pct = dims.pop(CLOUD_COST_INCREASE_PCT, None)
    cost = facts.cost
    if cost is not None or cost_pct is not None:
        if cost is not None and cost.new_spend:
            head = "new cloud spend (no spend was expected)"
        else:
            pct = cost.increase_pct if cost is not None and cost.increase_pct is not None else cost_pct
            head = (f"unexpected increase in cloud costs of {format_pct(pct)}" if pct is not None
                    else "unexpected increase in cloud costs")
        amounts: list[str] = []
        if cost is not None:
            if cost.actual is not None:
                label = "forecast" if cost.forecast else "actual"
                amounts.append(f"{label} {format_amount(cost.actual, cost.currency)}")
            if cost.expected is not None:
                amounts.append(f"expected {format_amount(cost.expected, cost.currency)}")
            if cost.impact is not None:
                amounts.append(f"{format_amount(cost.impact, cost.currency)} over")
            if cost.period:
                amounts.append(_oneline(cost.period))
        parts.append(head + (f" ({', '.join(amounts)})" if amounts else ""))
    for name in sorted(dims):
        words = name.removesuffix("_pct").replace("_", " ")
        value = format_pct(dims[name]) if name.endswith("_pct") else f"{dims[name]:g}"
        parts.append(f"{words}: {value}")
    if not parts:
        return "no impact figures were recorded by the monitors."
    return "; ".join(parts) + "."


def final_update_text(facts: IncidentFacts, *, reopens: int = 0) -> str:
    """The final stakeholder update: what happened, how long, the impact, the current state, the next step.

    Written for stakeholders (no rule names or internal reasons), from the recorded facts only.
    """
    title = _oneline(facts.title)
    where = []
    if facts.service:
        where.append(f"on service {_oneline(facts.service)}")
    if facts.source:
        where.append(f"reported by {_oneline(facts.source)}")
    what = f"{title}" + (f", {', '.join(where)}" if where else "") + f" ({facts.peak_severity.name})."
    opened = format_datetime(facts.opened_at)
    if facts.resolved_at is not None:
        resolved = format_datetime(facts.resolved_at)
        duration = (f"{format_duration(facts.resolved_at - facts.opened_at)}, from the first alert at {opened} "
                    f"to the resolution at {resolved}.")
        state = f"resolved at {resolved}."
    else:
        duration = f"since the first alert at {opened}; not resolved yet."
        state = "not resolved yet."
    if reopens:
        times = "once" if reopens == 1 else f"{reopens} times"
        state = state.rstrip(".") + f", after it came back {times} following an earlier resolution."
    return "\n".join([
        f"Resolved: {title}",
        "",
        f"What happened: {what}",
        f"Duration: {duration}",
        f"Impact: {impact_text(facts)}",
        f"Current state: {state}",
        "Next step: a post-mortem with everyone involved; its date is to be set.",
    ])


_FINAL_UPDATE_STATE = {
    "sent": "The bridge sent the update below to the incident's subscribers as a PagerDuty status update.",
    "drafted": "Draft below: send it to the stakeholders (the bridge sends it as a PagerDuty status update "
               "when the rules set final_update: status_update).",
    "unsupported": "The bridge could not send it as a PagerDuty status update: this PagerDuty account lacks the "
                   "ability (HTTP 402). Send the draft below to the stakeholders.",
    "refused": "PagerDuty refused it as a status update (the bridge's timeline of this incident says why). Send the "
               "draft below to the stakeholders.",
    "skipped": "Draft below: send it to the stakeholders.",
}


def resolution_note_text(facts: IncidentFacts, *, holders: Mapping[str, str], monitors: Iterable[MonitorRef],
                         final_update: FinalUpdateState, draft: str, postmortem_link: str,
                         resolution: int = 1) -> str:
    """The resolution checklist: each step of the process addressed to the role that holds it, naming who holds
    it (`holders`, role -> holder, as in the role-assignment note), with the monitors to watch, the final update
    (sent, or its draft) and where the post-mortem draft is."""
    when = format_datetime(facts.resolved_at) if facts.resolved_at is not None else "now"
    after = (f", {format_duration(facts.resolved_at - facts.opened_at)} after the first alert"
             if facts.resolved_at is not None else "")
    again = f" again (resolution {resolution}: the previous one did not hold)" if resolution > 1 else ""
    lines = [f"incident-bridge: this {facts.peak_severity.name} incident is resolved{again} ({when}{after}). "
             "The process's resolution checklist, by role:", ""]
    monitor_list = list(monitors)
    for role, step in CHECKLIST:
        holder = _oneline(holders.get(role)) or "no target configured"
        line = f"- {role} ({holder}): {step}"
        if role == "Infrastructure Lead":
            if monitor_list:
                lines.append(line + " Datadog monitors that fired:")
                for m in monitor_list:
                    lines.append(f"  - monitor {m.monitor_id}, {m.title}" + (f": {m.url}" if m.url else ""))
                continue
            service = f" of service {_oneline(facts.service)}" if facts.service else ""
            line += f" No Datadog monitor was recorded for this incident: check the dashboards{service}."
        elif role == "Communications Lead":
            line += " " + _FINAL_UPDATE_STATE[final_update]
        elif role == "Incident Coordinator":
            line += f" Post-mortem draft: {postmortem_link}"
        lines.append(line)
    label = "as sent" if final_update == "sent" else "draft"
    lines += ["", f"Final stakeholder update ({label}):", "", draft]
    return "\n".join(lines)


def reopen_note_text(title: str, reopening: Reopening, *, severity: str) -> str:
    """The note on the (new or same) PagerDuty incident saying the resolution did not hold, with a link to the
    previous PagerDuty incident when PagerDuty opened a new one."""
    if reopening.resolved_at is not None:
        after = f"{format_duration(reopening.at - reopening.resolved_at)} after it was resolved at " \
                f"{format_datetime(reopening.resolved_at)}"
    else:
        after = "shortly after it was resolved"
    lines = [f"incident-bridge: the resolution did not hold. {_oneline(title)} fired again {after}, within the "
             f"reopen window (settings.reopen_within), so the bridge reopened its incident (reopening "
             f"{reopening.number}, now {severity}) instead of opening a new one."]
    previous = reopening.previous
    if reopening.kept_open:
        lines.append("PagerDuty: this incident never resolved there (the resolve had not gone out), so it stayed open.")
    elif previous is not None:
        link = f" ({previous.url})" if previous.url else ""
        lines.append(f"PagerDuty: a resolved incident cannot reopen, so this is a new PagerDuty incident for the "
                     f"same dedup key; the previous one is {previous.id}{link}.")
    else:
        lines.append("PagerDuty: the bridge knew no earlier PagerDuty incident for it.")
    lines.append("The roles are requested again; the resolution checklist follows the next resolution.")
    return "\n".join(lines)
