"""`rules explain`'s "why not paged", worked out from the decision and its trace (never from the reasons' words)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.model import Alert
from bridge.rules.engine import evaluate_traced
from bridge.rules.loader import compile_sources
from bridge.ruletools.explain import why_not_paged

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PROCESS = """
dimensions:
  users_affected_pct:
    thresholds:
      P0: {gt: 20}
      P1: {gte: 10, lte: 20}
roles:
  Lead: {}
paging:
  P0: {roles: [Lead], declare: true}
  P1: {roles: [Lead], declare: true}
"""
RULES = """rules:
- name: checkout-users
  match: {service: checkout}
  dimension: users_affected_pct
- name: quiet
  match: {service: batch}
  severity: P0
  action: record
- name: muted
  match: {service: noisy}
  action: suppress
"""

# (id, the alert's attributes, why it is not paged; [] when it pages)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("pages", {"service": "checkout", "value": 30}, []),
    ("below-every-threshold", {"service": "checkout", "value": 0},
     ["no severity: users_affected_pct below every threshold"]),
    ("no-rule", {"service": "elsewhere"},
     ["no rule matched", "no severity: no dimension, category or severity from the rules"]),
    ("rule-records", {"service": "batch"}, ["rule quiet says record"]),
    ("rule-suppresses", {"service": "noisy"}, ["rule muted says suppress"]),
    ("recovery", {"service": "checkout", "value": 30, "state": "resolved"},
     ["the source says the alert recovered: a recovery resolves an incident, it never pages"]),
]


@pytest.mark.parametrize(("attrs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_why_not_paged(attrs: dict[str, Any], expected: list[str]) -> None:
    rs = compile_sources([("process.yaml", PROCESS), ("rules.yaml", RULES)]).ruleset
    a = Alert.from_dict({"source": "datadog", "title": "Checkout payment failures", "received_at": NOW.isoformat(),
                         **attrs})
    assert why_not_paged(a, evaluate_traced(a, rs, NOW), rs) == expected
