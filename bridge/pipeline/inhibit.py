"""Inhibition: while a more severe incident of an inhibiting rule is open, matching lower alerts attach to it.

Pure: the store lists the open incidents of inhibiting rules (`InhibitCandidate`), this picks the one, if any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.model import Alert, Decision
from bridge.rules.model import Ruleset
from bridge.store import InhibitCandidate


def inhibiting_rules(ruleset: Ruleset | None) -> dict[str, Mapping[str, Any]]:
    """Each rule with `inhibits:`, by name, with its spec (`matchers`, `equal`)."""
    if ruleset is None:
        return {}
    return {r.name: r.extra["inhibits"] for r in ruleset.rules if r.extra.get("inhibits")}


def find_inhibitor(alert: Alert, decision: Decision, candidates: Sequence[InhibitCandidate],
                   specs: Mapping[str, Mapping[str, Any]]) -> InhibitCandidate | None:
    """The first open, more severe incident whose rule inhibits this alert: its matchers match the alert, and the
    labels of its `equal` list have the same values on the alert and on the incident's first alert."""
    if decision.severity is None:
        return None
    for candidate in candidates:
        spec = specs.get(candidate.rule)
        if spec is None or candidate.severity is None or candidate.first_alert is None:
            continue
        if not candidate.severity.is_higher_than(decision.severity):
            continue
        if not all(m.matches(alert) for m in spec["matchers"]):
            continue
        if all(label(candidate.first_alert, name) == label(alert, name) for name in spec["equal"]):
            return candidate
    return None


def label(alert: Alert, name: str) -> str:
    """The value of a field or `tag:<key>` used by inhibition's `equal` list."""
    if name.startswith("tag:"):
        return ",".join(sorted(alert.tag_values(name[4:])))
    value = alert.field_value(name)
    if value is None and alert.has_tag(name):
        return ",".join(sorted(alert.tag_values(name)))
    return value or ""
