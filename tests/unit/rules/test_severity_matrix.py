"""Every boundary of the shipped severity matrix (DESIGN.md table): the higher severity wins on a shared one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.model import Action, Alert, AlertState, CostFacts, Severity
from bridge.rules.engine import evaluate
from bridge.rules.loader import load_ruleset, shipped_rules_dir

RULESET = load_ruleset(shipped_rules_dir()).ruleset
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def alert_with(dimension: str, value: float) -> Alert:
    return Alert(source="manual", source_event_id="t", received_at=NOW, title="t", state=AlertState.FIRING,
                 group_key="t", dimensions={dimension: value})


MATRIX = [
    # users unable to use core functionality: P0 > 20, P1 10-20, P2 5-10, P3 > 0 and < 5
    ("users_affected_pct", 0, None),
    ("users_affected_pct", 0.01, "P3"),
    ("users_affected_pct", 4.99, "P3"),
    ("users_affected_pct", 5, "P2"),
    ("users_affected_pct", 9.99, "P2"),
    ("users_affected_pct", 10, "P1"),
    ("users_affected_pct", 20, "P1"),
    ("users_affected_pct", 20.01, "P0"),
    ("users_affected_pct", 100, "P0"),
    # unexpected cloud-cost increase: P0 > 100, P1 50-100, P2 30-50, no P3
    ("cloud_cost_increase_pct", -62.3, None),
    ("cloud_cost_increase_pct", 0, None),
    ("cloud_cost_increase_pct", 29.99, None),
    ("cloud_cost_increase_pct", 30, "P2"),
    ("cloud_cost_increase_pct", 49.99, "P2"),
    ("cloud_cost_increase_pct", 50, "P1"),
    ("cloud_cost_increase_pct", 100, "P1"),
    ("cloud_cost_increase_pct", 100.01, "P0"),
    ("cloud_cost_increase_pct", 333.67, "P0"),
    # customers affected: P0 > 25, P1 10-25, P2 5-10, P3 > 0 and < 5
    ("customers_affected_pct", 0, None),
    ("customers_affected_pct", 4.9, "P3"),
    ("customers_affected_pct", 5, "P2"),
    ("customers_affected_pct", 10, "P1"),
    ("customers_affected_pct", 25, "P1"),
    ("customers_affected_pct", 25.5, "P0"),
]


@pytest.mark.parametrize(("dimension", "value", "expected"), MATRIX,
                         ids=[f"{d}={v}" for d, v, _ in MATRIX])
def test_matrix_boundaries(dimension: str, value: float, expected: str | None) -> None:
    decision = evaluate(alert_with(dimension, value), RULESET, NOW)
    assert (decision.severity.name if decision.severity else None) == expected
    assert decision.action is (Action.PAGE if expected else Action.RECORD)


MULTI = [
    ({"users_affected_pct": 3, "customers_affected_pct": 30}, "P0"),
    ({"users_affected_pct": 12, "customers_affected_pct": 6}, "P1"),
    ({"users_affected_pct": 0, "customers_affected_pct": 0, "cloud_cost_increase_pct": 55}, "P1"),
    ({"users_affected_pct": 1, "cloud_cost_increase_pct": 10}, "P3"),
]


@pytest.mark.parametrize(("dims", "expected"), MULTI, ids=[str(d) for d, _ in MULTI])
def test_highest_across_dimensions_wins(dims: dict[str, float], expected: str) -> None:
    alert = Alert(source="manual", source_event_id="t", received_at=NOW, title="t", state=AlertState.FIRING,
                  group_key="t", dimensions=dims)
    assert evaluate(alert, RULESET, NOW).severity == Severity.parse(expected)


@pytest.mark.parametrize(("severity", "event", "urgency"), [
    (Severity.P0, "critical", "high"), (Severity.P1, "error", "high"),
    (Severity.P2, "warning", "low"), (Severity.P3, "info", "low"),
], ids=["P0", "P1", "P2", "P3"])
def test_severity_maps_to_event_severity_and_urgency(severity: Severity, event: str, urgency: str) -> None:
    assert severity.event_severity == event
    assert severity.urgency == urgency


def test_category_breach_is_p0_and_engages_infosec() -> None:
    alert = Alert(source="manual", source_event_id="t", received_at=NOW, title="t", state=AlertState.FIRING,
                  group_key="t", categories=frozenset({"security", "breach"}))
    decision = evaluate(alert, RULESET, NOW)
    assert decision.severity is Severity.P0
    assert "InfoSec" in decision.roles


COST = [
    # (increase, impact, forecast, new_spend, expected severity, expected action)
    (333.67, "1001", False, False, "P0", "page"),
    (4650, "0.93", True, False, "P2", "record"),   # forecast capped at P2, and $0.93 is under the $100 floor
    (300, "5000", True, False, "P2", "page"),       # forecast capped at P2
    (None, "800", False, True, "P2", "page"),       # new spend: its own default severity
    (-62.3, "-31.14", False, False, None, "record"),
]


@pytest.mark.parametrize(("pct", "impact", "forecast", "new_spend", "severity", "action"), COST,
                         ids=["anomaly-333pct", "forecast-tiny", "forecast-big", "new-spend", "under-budget"])
def test_cost_limits(pct: float | None, impact: str, forecast: bool, new_spend: bool, severity: str | None,
                     action: str) -> None:
    from decimal import Decimal

    alert = Alert(source="aws-sns", source_event_id="t", received_at=NOW, title="cost", state=AlertState.FIRING,
                  group_key="t", categories=frozenset({"cloud_cost"}),
                  dimensions={} if pct is None else {"cloud_cost_increase_pct": pct},
                  cost=CostFacts(impact=Decimal(impact), forecast=forecast, new_spend=new_spend,
                                 increase_pct=None if pct is None else Decimal(str(pct))))
    decision = evaluate(alert, RULESET, NOW)
    assert (decision.severity.name if decision.severity else None) == severity
    assert decision.action.value == action
    if decision.severity:
        assert "Infrastructure Lead" in decision.roles or decision.action.value == "record"
