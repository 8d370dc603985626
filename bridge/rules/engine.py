"""The rules engine: a pure function of (alert, ruleset, now) to a Decision, with every reason kept.

Evaluation, in order:

1. Rules are tried in file order (the index skips those that cannot match). The first matching rule decides;
   a rule with `continue: true` lets the following matching rules contribute as well.
2. Dimension values are the alert's own (a Datadog `dimension:` tag, a cost percentage) plus, for each applied
   rule with `dimension:`, the alert's observed value.
3. Each dimension value maps to the most severe range that holds it (the higher severity wins on a shared
   boundary); the highest severity across dimensions wins, together with a rule's direct `severity`, a
   `severity_map`, and categories that imply a severity (a breach or data loss is P0).
4. Cost limits: new spend takes its own severity; forecasts are capped; a cost alert under the minimum amount
   cannot page.
5. A rule's `floor` raises and `cap` lowers the result.
6. The action: a resolved alert resolves; no severity records; a rule may force `record` or `suppress`;
   otherwise the alert pages the roles the paging policy names for its severity and categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bridge.model import (
    CUSTOMERS_AFFECTED_PCT,
    USERS_AFFECTED_PCT,
    Action,
    Alert,
    AlertState,
    Decision,
    Severity,
    highest,
)
from bridge.rules.model import CostPolicy, Rule, Ruleset

# The key of `Decision.details` naming the heartbeats an alert counts for (read by the pipeline stage and policy).
HEARTBEATS = "heartbeats"


@dataclass
class RuleTrace:
    """How one rule fared against the alert, for `rules explain`."""

    rule: str
    where: str
    matched: bool
    failed: list[str] = field(default_factory=list)
    applied: bool = False


@dataclass
class Evaluation:
    """The decision and the trace that led to it."""

    decision: Decision
    considered: list[RuleTrace]
    skipped_by_index: int
    dimension_values: dict[str, float]
    thresholds: dict[str, str]


def evaluate(alert: Alert, ruleset: Ruleset, now: datetime | None = None) -> Decision:
    """Decide what to do with `alert` under `ruleset`. Pure: `now` is accepted for rules that need time."""
    return _decide(alert, ruleset, now, trace=False).decision


def evaluate_traced(alert: Alert, ruleset: Ruleset, now: datetime | None = None) -> Evaluation:
    """Like `evaluate`, with the trace of every rule considered."""
    return _decide(alert, ruleset, now, trace=True)


def _decide(alert: Alert, ruleset: Ruleset, now: datetime | None, *, trace: bool) -> Evaluation:
    candidates = ruleset.candidates(alert)
    traces: list[RuleTrace] = []
    applied: list[Rule] = []
    for rule in candidates:
        if trace:
            failed = [m.describe() for m in rule.matchers if not m.matches(alert)]
            record = RuleTrace(rule.name, rule.where, matched=not failed, failed=failed)
            traces.append(record)
            if failed:
                continue
            record.applied = True
        elif not rule.matches(alert):  # stops at the first failing condition
            continue
        applied.append(rule)
        if not rule.continue_:
            break
    reasons: list[str] = []
    if applied:
        reasons.append("rule " + ", ".join(f"{r.name}" + (f" ({r.where})" if r.where else "") for r in applied)
                       + " matched")
    else:
        reasons.append("no rule matched")

    # Dimension values: the alert's own, then rule mappings of its observed value.
    dims: dict[str, float] = dict(alert.dimensions)
    for rule in applied:
        if rule.dimension and alert.value is not None and rule.dimension not in alert.dimensions:
            dims[rule.dimension] = alert.value
            reasons.append(f"rule {rule.name} reads the observed value {_fmt(alert.value)} as {rule.dimension}")

    categories = set(alert.categories)
    for rule in applied:
        categories |= rule.categories

    candidates_sev: list[Severity | None] = []
    thresholds: dict[str, str] = {}
    for name, value in sorted(dims.items()):
        dim = ruleset.dimensions.get(name)
        if dim is None:
            reasons.append(f"dimension {name} = {_fmt(value)} is not defined in the rules; ignored")
            continue
        sev, rng = dim.severity_for(value)
        if sev is None:
            reasons.append(f"{name} = {_fmt(value)} is below every threshold")
        else:
            assert rng is not None
            thresholds[name] = f"{sev.name} ({rng.describe()})"
            reasons.append(f"{name} = {_fmt(value)} is {sev.name} ({rng.describe()})")
        candidates_sev.append(sev)

    for rule in applied:
        if rule.severity is not None:
            candidates_sev.append(rule.severity)
            reasons.append(f"rule {rule.name} sets severity {rule.severity.name}")
        if rule.severity_map is not None:
            raw = alert.field_value(rule.severity_map.field)
            mapped = rule.severity_map.table.get((raw or "").strip().lower())
            if mapped is not None:
                candidates_sev.append(mapped)
                reasons.append(f"{rule.severity_map.field} {raw!r} maps to {mapped.name} (rule {rule.name})")
            elif raw:
                reasons.append(f"{rule.severity_map.field} {raw!r} has no entry in rule {rule.name}'s severity map")
    for cat in sorted(categories):
        spec = ruleset.categories.get(cat)
        if spec is not None and spec.severity is not None:
            candidates_sev.append(spec.severity)
            reasons.append(f"category {cat} means at least {spec.severity.name}")

    severity = highest(candidates_sev)

    # Cost limits.
    cost_policy = ruleset.cost
    for rule in applied:
        if rule.cost:
            cost_policy = cost_policy.merged(rule.cost)
    cost_block: str | None = None
    if alert.cost is not None:
        severity, cost_block = _apply_cost(alert, severity, cost_policy, reasons)

    for rule in applied:
        if rule.floor is not None and (severity is None or rule.floor.is_higher_than(severity)):
            reasons.append(f"rule {rule.name} raises severity to its floor {rule.floor.name}")
            severity = rule.floor
        if rule.cap is not None and severity is not None and severity.is_higher_than(rule.cap):
            reasons.append(f"rule {rule.name} caps severity at {rule.cap.name}")
            severity = rule.cap

    # Action.
    forced = next((r for r in applied if r.action is not None), None)
    if alert.state is AlertState.RESOLVED:
        action = Action.RESOLVE
        reasons.append("the source says the alert recovered: resolve")
    elif forced is not None and forced.action in (Action.SUPPRESS, Action.RECORD):
        action = forced.action
        reasons.append(f"rule {forced.name} says {forced.action.value}: not paged")
    elif severity is None:
        action = Action.RECORD
        reasons.append("no severity: recorded, not paged")
    elif cost_block is not None:
        action = Action.RECORD
        reasons.append(cost_block)
    else:
        action = Action.PAGE

    # Heartbeats: any alert matching one is a beat (the pipeline stage records it). One that no rule matched is
    # only a beat, such as Alertmanager's always-firing Watchdog: consumed, never paged.
    beats = [h.name for h in ruleset.heartbeats_of(alert)] if ruleset.heartbeats else []
    if beats and not applied and action is not Action.RESOLVE:
        action = Action.RECORD
        reasons.append(f"heartbeat {', '.join(beats)}: counted as a beat, not paged (no rule matched)")
    elif beats:
        reasons.append(f"also counted as a beat of heartbeat {', '.join(beats)}")

    roles = _roles(severity, categories, dims, ruleset) if severity is not None else ()
    first = applied[0] if applied else None
    decision = Decision(
        action=action,
        severity=severity,
        rule=first.name if first else None,
        reasons=tuple(reasons),
        roles=roles if action in (Action.PAGE, Action.RESOLVE) else (),
        dimensions=dims,
        categories=frozenset(categories),
        urgency=severity.urgency if severity else None,
        group_key=_group_key(alert, applied),
        pending_seconds=max((r.pending_seconds for r in applied), default=0),
        repage_seconds=max((r.repage_seconds for r in applied), default=0),
        ruleset_hash=ruleset.hash,
        details=_details(alert, applied, ruleset) | ({HEARTBEATS: beats} if beats else {}),
    )
    return Evaluation(decision=decision, considered=traces,
                      skipped_by_index=len(ruleset.rules) - len(candidates),
                      dimension_values=dims, thresholds=thresholds)


def _apply_cost(alert: Alert, severity: Severity | None, policy: CostPolicy,
                reasons: list[str]) -> tuple[Severity | None, str | None]:
    cost = alert.cost
    assert cost is not None
    if cost.new_spend and cost.increase_pct is None and policy.new_spend_severity is not None:
        if policy.new_spend_severity.is_higher_than(severity):
            severity = policy.new_spend_severity
        reasons.append(f"new spend (expected spend was zero): {policy.new_spend_severity.name} by default")
    if cost.forecast and policy.forecast_cap is not None and severity is not None \
            and severity.is_higher_than(policy.forecast_cap):
        reasons.append(f"forecast, not actual spend: capped at {policy.forecast_cap.name}")
        severity = policy.forecast_cap
    amount = _cost_amount(cost.impact, cost.actual, cost.expected)
    if policy.min_amount > 0 and amount is not None and amount < policy.min_amount:
        return severity, (f"cost amount {amount} {cost.currency} is under the minimum "
                          f"{policy.min_amount} {cost.currency} for paging: recorded, not paged")
    return severity, None


def _cost_amount(impact: Decimal | None, actual: Decimal | None, expected: Decimal | None) -> Decimal | None:
    """The money at stake: the unexpected part when known, else the whole amount."""
    if impact is not None:
        return impact
    if actual is not None and expected is not None:
        return actual - expected
    return actual


def roles_for(severity: Severity, ruleset: Ruleset) -> tuple[str, ...]:
    """The roles the paging policy engages at `severity` alone (no categories, no impact): a page the bridge
    raises itself, such as a missed heartbeat's."""
    return _roles(severity, set(), {}, ruleset)


def _roles(severity: Severity, categories: set[str], dims: dict[str, float], ruleset: Ruleset) -> tuple[str, ...]:
    paging = ruleset.paging
    out: list[str] = []
    level = paging.levels.get(severity)
    if level is not None:
        out.extend(level.roles)
    for cat in sorted(categories):
        out.extend(paging.category_roles.get(cat, ()))
    declared = level.declare if level is not None else False
    user_impact = dims.get(USERS_AFFECTED_PCT, 0) > 0 or dims.get(CUSTOMERS_AFFECTED_PCT, 0) > 0
    if declared and user_impact and paging.customer_support_role in ruleset.roles:
        out.append(paging.customer_support_role)
    if dims.get(CUSTOMERS_AFFECTED_PCT, 0) >= paging.customer_success_threshold_pct \
            and paging.customer_success_role in ruleset.roles:
        out.append(paging.customer_success_role)
    seen: dict[str, None] = {}
    for role in out:
        seen.setdefault(role, None)
    return tuple(seen)


def _group_key(alert: Alert, applied: list[Rule]) -> str:
    for rule in applied:
        if rule.group_by:
            parts = []
            for name in rule.group_by:
                if name.startswith("tag:"):
                    parts.append(f"{name}={','.join(sorted(alert.tag_values(name[4:])))}")
                else:
                    parts.append(f"{name}={alert.field_value(name) or ''}")
            return f"rule:{rule.name}:" + ";".join(parts)
    return alert.group_key


# The rule settings a decision carries to the pipeline and the follow-ups. Others stay with the rule: `inhibits`
# (matchers, read from the ruleset by the pipeline's inhibition step) is configuration, not a fact of the alert.
DECISION_EXTRAS = frozenset({"auto_resolve_seconds", "postmortem", "final_update"})


def _details(alert: Alert, applied: list[Rule], ruleset: Ruleset) -> dict[str, object]:
    details: dict[str, object] = {}
    if alert.cost is not None:
        details["cost"] = alert.cost.to_dict()
    for rule in applied:
        for key, value in rule.extra.items():
            if key in DECISION_EXTRAS:
                details.setdefault(key, value)
    default_auto_resolve = ruleset.settings.auto_resolve_after
    if default_auto_resolve and "auto_resolve_seconds" not in details:
        details["auto_resolve_seconds"] = default_auto_resolve
    return details


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
