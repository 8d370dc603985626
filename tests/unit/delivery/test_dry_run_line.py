"""The line a dry run prints for each event it does not send (`print_dry_run_event`): our severity beside
PagerDuty's event severity and the summary for a trigger, nothing of a severity for a resolve, and no roles (who
would be requested is the set-up's to say: `bridge.followups.dry_run`)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from bridge.delivery.worker import print_dry_run_event

PREFIX = "DRY-RUN (no PAGERDUTY_ROUTING_KEY, nothing sent): "

LINE_CASES = [
    ("trigger",
     {"event_action": "trigger", "dedup_key": "k1", "payload": {
         "summary": "[P0] Checkout: users cannot pay", "severity": "critical", "source": "checkout",
         "custom_details": {"severity": "P0", "roles": ["Incident Coordinator"]}}},
     {"dry_run": True, "event_action": "trigger", "dedup_key": "k1", "severity": "P0",
      "pagerduty_severity": "critical", "summary": "[P0] Checkout: users cannot pay"}),
    ("p2_trigger_names_no_roles",
     {"event_action": "trigger", "dedup_key": "k2", "payload": {
         "summary": "[P2] Orders failing", "severity": "warning", "source": "orders",
         "custom_details": {"severity": "P2", "roles": ["Technical Lead"]}}},
     {"dry_run": True, "event_action": "trigger", "dedup_key": "k2", "severity": "P2",
      "pagerduty_severity": "warning", "summary": "[P2] Orders failing"}),
    ("resolve_has_no_severity",
     {"event_action": "resolve", "dedup_key": "k1"},
     {"dry_run": True, "event_action": "resolve", "dedup_key": "k1"}),
]


@pytest.mark.parametrize(("event", "printed"), [c[1:] for c in LINE_CASES], ids=[c[0] for c in LINE_CASES])
def test_print_dry_run_event(event: dict[str, Any], printed: dict[str, Any]) -> None:
    out = io.StringIO()
    print_dry_run_event(event, out)
    line = out.getvalue()
    assert line.startswith(PREFIX) and line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line.removeprefix(PREFIX)) == printed
