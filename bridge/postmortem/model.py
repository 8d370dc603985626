"""The input of a post-mortem draft: `IncidentFacts` (with its timeline events and related incidents), and
whether the process asks for a post-mortem at all (`needs_postmortem`). Pure values."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from bridge.model import CostFacts, Severity

# Kinds the store records; unknown kinds still render, with a label made from the kind itself.
TIMELINE_KINDS: Mapping[str, str] = types.MappingProxyType({
    "detection": "Detection",
    "alert": "Alert",
    "severity_change": "Severity change",
    "decision": "Decision",
    "page": "Page",
    "responder_request": "Responder request",
    "acknowledgement": "Acknowledgement",
    "note": "Note",
    "silence": "Silence",
    "inhibition": "Inhibition",
    "escalation": "Escalation",
    "resolution": "Resolution",
    "resolution_note": "Resolution checklist",
    "final_update": "Final update",
    "reopen": "Reopened",
})


@dataclass(frozen=True)
class TimelineEvent:
    """One line of the Timeline Review table: something that happened, when, who was involved, what was done."""

    at: datetime                 # timezone-aware; a naive datetime is taken as UTC
    kind: str                    # one of TIMELINE_KINDS (others render with a generic label)
    description: str
    personnel: str = ""
    actions: str = ""


@dataclass(frozen=True)
class RelatedIncident:
    """A past incident that looks like this one (same service, tags or error signature)."""

    title: str
    date: datetime | date | None
    similarity: str              # why it looks related, e.g. "same service checkout; shared tag env:prod"
    link: str = ""               # PagerDuty / Datadog / bridge URL; empty when there is none


@dataclass(frozen=True)
class IncidentFacts:
    """What the bridge recorded about one incident: the input of `render_postmortem`.

    `severity` is the current (last decided) severity and `highest_severity` the most severe it reached (None =
    same as `severity`). `opened_at` is when the first alert of the incident arrived, `resolved_at` when it was
    resolved (None while open); both UTC. `dimensions` holds the highest value seen per dimension
    (`users_affected_pct`, `customers_affected_pct`, `cloud_cost_increase_pct`). `related` is None when related
    incidents were not looked up (feature off or not yet run), an empty tuple when none were found. `roles` maps
    a role of the process ("Incident Coordinator") to whoever holds it.
    """

    key: str
    title: str
    severity: Severity
    status: str
    opened_at: datetime
    highest_severity: Severity | None = None
    resolved_at: datetime | None = None
    service: str | None = None
    source: str = ""
    pagerduty_incident_id: str | None = None
    pagerduty_url: str | None = None
    categories: frozenset[str] = frozenset()
    dimensions: Mapping[str, float] = field(default_factory=dict)
    cost: CostFacts | None = None
    rules: tuple[str, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    related: tuple[RelatedIncident, ...] | None = None
    roles: Mapping[str, str] = field(default_factory=dict)

    @property
    def peak_severity(self) -> Severity:
        """The most severe of `severity` and `highest_severity`: what the post-mortem is about."""
        if self.highest_severity is not None and self.highest_severity.is_higher_than(self.severity):
            return self.highest_severity
        return self.severity


def needs_postmortem(severity: Severity | None, *, p2_flag: bool) -> bool:
    """True when the process requires its post-mortem template for an incident of this severity.

    "Use this template for every P0 and P1 incident. P2 incidents should use it when the root cause is unclear or
    cross-team" (docs/incident-process.md, "The post-mortem template"): `p2_flag` says the latter. P3 and
    unknown severities never need one.
    """
    if severity in (Severity.P0, Severity.P1):
        return True
    return severity is Severity.P2 and p2_flag
