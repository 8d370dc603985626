"""Amazon SNS receiver: AWS Cost Anomaly Detection and AWS Budgets notifications over an HTTPS subscription.

Contract with the server (and with `rules explain`):

- `authenticate(request, ctx)` does every trust decision: the SNS signature (`sns_verify.verify_message`, as of
  `ctx.now`), then the `TopicArn` allowlist (403), then the message age (403 "stale"). The server must call it,
  and only call `parse` when it returned.
- `parse(request, ctx)` only reads the body. It does not verify, so `rules explain` can run it on a saved
  payload without certificates. It trusts nothing that matters for security: an unverified body can only
  produce an Alert, never a network call, except the subscription confirmation below, which happens only when
  `ctx.settings["auto_confirm"]` is true and only to a validated `SubscribeURL` host (so `rules explain` must
  pass settings without `auto_confirm`).

Settings (`ctx.settings`): `topic_allowlist` (list of TopicArns, or a comma-separated string; empty rejects
everything; `"*"` accepts any verified topic and is meant for tests), `max_age_seconds` (default 3600; 0
disables the check), `cert_dir` (local directory of SNS signing certificates), `auto_confirm` (bool).
Services (`ctx.services`): `fetch_url(url) -> bytes`, used for certificate fetches and for `SubscribeURL`.

Which Message is which (cloud-cost.md §1-§2): a JSON object with `anomalyId` is Cost Anomaly Detection;
text with `Budget Name:` lines is AWS Budgets; anything else is still accepted as a budget-like cost alert with
`fields["parse_status"] = "unrecognized"` and no percentage (budget *action* notifications have no published
example, cloud-cost.md §2.1: "Never drop it").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bridge.errors import BadPayload, Forbidden
from bridge.model import Alert, AlertState, CostFacts, Link, Notice
from bridge.receivers.base import InboundRequest, Parsed, ReceiverContext
from bridge.receivers.cost import (
    cost_dimensions,
    cost_fields,
    currency_of,
    format_money,
    format_pct,
    increase_pct,
    is_new_spend,
    parse_amount,
    pct_of,
    plain,
)
from bridge.receivers.jsonbody import load_json
from bridge.receivers.sns_verify import (
    CertificateCache,
    check_sns_headers,
    make_cert_loader,
    normalize_envelope,
    parse_sns_timestamp,
    validate_sns_url,
    verify_message,
)

SOURCE = "aws-sns"
CATEGORIES = frozenset({"cloud_cost"})
DEFAULT_MAX_AGE_SECONDS = 3600  # the 1-hour maximum of `validate-aws-sns-message` (cloud-cost.md §3.3 step 6)
FUTURE_SKEW_SECONDS = 300       # a Timestamp this far ahead of our clock is clock skew, beyond it is suspicious

_MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


# ---------------------------------------------------------------------------------------------------------------
# AWS Cost Anomaly Detection (cloud-cost.md §1.2)


@dataclass(frozen=True)
class RootCause:
    """One entry of `rootCauses[]`; any key may be missing (cloud-cost.md §1.2)."""

    service: str | None = None
    region: str | None = None
    linked_account: str | None = None
    linked_account_name: str | None = None
    usage_type: str | None = None
    contribution: Decimal | None = None


@dataclass(frozen=True)
class AnomalyFacts:
    """The figures of one Cost Anomaly Detection message, with the percentage decided per cloud-cost.md §7."""

    anomaly_id: str
    account_id: str | None
    dimensional_value: str | None
    start: str | None
    end: str | None
    actual: Decimal | None
    expected: Decimal | None
    impact: Decimal | None
    max_impact: Decimal | None
    increase_pct: Decimal | None
    pct_source: str             # "totalImpactPercentage" | "computed" | "none"
    new_spend: bool
    root_causes: tuple[RootCause, ...] = ()
    details_link: str | None = None
    monitor_arn: str | None = None
    subscription_id: str | None = None
    subscription_name: str | None = None
    current_score: Decimal | None = None

    @property
    def main_service(self) -> str | None:
        """The root cause with the largest contribution names the service; else the monitored dimension."""
        with_service = [rc for rc in self.root_causes if rc.service]
        if with_service:
            best = max(with_service, key=lambda rc: rc.contribution if rc.contribution is not None else Decimal(-1))
            return best.service
        return self.dimensional_value


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _opt_amount(value: Any, what: str) -> Decimal | None:
    try:
        return parse_amount(value)
    except ValueError:
        raise BadPayload(f"Cost Anomaly Detection message: {what} is not a number ({value!r})") from None


def parse_anomaly(message: Mapping[str, Any]) -> AnomalyFacts:
    """Read a Cost Anomaly Detection SNS `Message` (already `json.loads`-ed) into `AnomalyFacts`.

    Percentage (cloud-cost.md §7): `impact.totalImpactPercentage` when present; else computed from
    `totalActualSpend` and `totalExpectedSpend` when expected > 0; else None. AWS omits the percentage when
    expected spend is 0 ("When TotalExpectedSpend is zero, this field is omitted", API_Impact.html): that is
    new spend, never 0 %. The 2021 format has no spend totals at all, so its percentage is None too.
    Raises BadPayload when `anomalyId` is missing or a figure is not a number.
    """
    anomaly_id = message.get("anomalyId")
    if not anomaly_id:
        raise BadPayload("Cost Anomaly Detection message has no anomalyId")
    impact_obj = message.get("impact") or {}
    if not isinstance(impact_obj, Mapping):
        raise BadPayload("Cost Anomaly Detection message: impact is not an object")
    actual = _opt_amount(impact_obj.get("totalActualSpend"), "impact.totalActualSpend")
    expected = _opt_amount(impact_obj.get("totalExpectedSpend"), "impact.totalExpectedSpend")
    impact = _opt_amount(impact_obj.get("totalImpact"), "impact.totalImpact")
    if impact is None and actual is not None and expected is not None:
        impact = actual - expected
    given_pct = _opt_amount(impact_obj.get("totalImpactPercentage"), "impact.totalImpactPercentage")
    pct: Decimal | None
    if given_pct is not None:
        pct, pct_source = given_pct, "totalImpactPercentage"
    else:
        pct = increase_pct(actual, expected)
        pct_source = "computed" if pct is not None else "none"
    new_spend = pct is None and expected is not None and expected == 0 and (
        is_new_spend(actual, expected) or (impact is not None and impact > 0))

    causes: list[RootCause] = []
    raw_causes = message.get("rootCauses")
    for rc in raw_causes if isinstance(raw_causes, list) else []:
        if not isinstance(rc, Mapping):
            continue
        rc_impact = _obj(rc.get("impact"))
        causes.append(RootCause(
            service=_opt_str(rc.get("service")),
            region=_opt_str(rc.get("region")),
            linked_account=_opt_str(rc.get("linkedAccount")),
            linked_account_name=_opt_str(rc.get("linkedAccountName")),
            usage_type=_opt_str(rc.get("usageType")),
            contribution=_opt_amount(rc_impact.get("contribution"), "rootCauses[].impact.contribution"),
        ))
    score = _obj(message.get("anomalyScore"))
    return AnomalyFacts(
        anomaly_id=str(anomaly_id),
        account_id=_opt_str(message.get("accountId")),
        # SNS spells it dimensionalValue; EventBridge and the API spell it dimensionValue (cloud-cost.md §0).
        dimensional_value=_opt_str(message.get("dimensionalValue") or message.get("dimensionValue")),
        start=_opt_str(message.get("anomalyStartDate")),
        end=_opt_str(message.get("anomalyEndDate")),
        actual=actual,
        expected=expected,
        impact=impact,
        max_impact=_opt_amount(impact_obj.get("maxImpact"), "impact.maxImpact"),
        increase_pct=pct,
        pct_source=pct_source,
        new_spend=new_spend,
        root_causes=tuple(causes),
        details_link=_opt_str(message.get("anomalyDetailsLink")),
        monitor_arn=_opt_str(message.get("monitorArn")),
        subscription_id=_opt_str(message.get("subscriptionId")),
        subscription_name=_opt_str(message.get("subscriptionName")),
        current_score=_opt_amount(score.get("currentScore"), "anomalyScore.currentScore"),
    )


def _anomaly_title(f: AnomalyFacts) -> str:
    what = f.dimensional_value or f.main_service or "unknown dimension"
    if f.increase_pct is not None:
        impact = f.impact if f.impact is not None else None
        if f.expected is not None:
            return (f"AWS cost anomaly: {what} {format_pct(f.increase_pct)} "
                    f"({format_money(impact)} over {format_money(f.expected)} expected)")
        return f"AWS cost anomaly: {what} {format_pct(f.increase_pct)} ({format_money(impact)} impact)"
    if f.new_spend:
        return f"AWS cost anomaly: {what} new spend ({format_money(f.actual or f.impact)}, nothing expected)"
    return f"AWS cost anomaly: {what} {format_money(f.impact)} impact (no percentage in the message)"


def _anomaly_message(f: AnomalyFacts) -> str:
    lines = [f"Anomaly {f.anomaly_id}" + (f" from {f.start}" if f.start else "") + (f" to {f.end}" if f.end else "")]
    figures = []
    if f.actual is not None:
        figures.append(f"actual {format_money(f.actual)}")
    if f.expected is not None:
        figures.append(f"expected {format_money(f.expected)}")
    if f.impact is not None:
        figures.append(f"impact {format_money(f.impact)}")
    if f.max_impact is not None:
        figures.append(f"largest daily impact {format_money(f.max_impact)}")
    figures.append(f"increase {format_pct(f.increase_pct)}" + (" (new spend)" if f.new_spend else ""))
    lines.append(", ".join(figures))
    if f.root_causes:
        lines.append("Root causes:")
        for rc in f.root_causes:
            parts = [f"{label} {value}" for label, value in (
                ("service", rc.service), ("region", rc.region),
                ("account", rc.linked_account + (f" ({rc.linked_account_name})" if rc.linked_account_name else "")
                 if rc.linked_account else None),
                ("usage type", rc.usage_type)) if value]
            contribution = f": {format_money(rc.contribution)}" if rc.contribution is not None else ""
            lines.append(f"- {', '.join(parts) or 'unspecified'}{contribution}")
    if f.details_link:
        lines.append(f"Details: {f.details_link}")
    return "\n".join(lines)


def _root_cause_tags(causes: tuple[RootCause, ...]) -> tuple[tuple[str, str], ...]:
    tags: list[tuple[str, str]] = []
    for rc in causes:
        for key, value in (("service", rc.service), ("region", rc.region), ("account", rc.linked_account),
                           ("account_name", rc.linked_account_name), ("usage_type", rc.usage_type)):
            if value and (key, value) not in tags:
                tags.append((key, value))
    return tuple(tags)


def anomaly_alert(facts: AnomalyFacts, envelope: Mapping[str, Any], *, received_at: datetime) -> Alert:
    """The Alert of one Cost Anomaly Detection notification.

    `group_key` is `aws-cad:<anomalyId>`: AWS re-sends the same anomaly with a growing impact
    (getting-started-ad.html, "You might receive multiple alerts"), and the store upserts on it.
    """
    cost = CostFacts(
        actual=facts.actual, expected=facts.expected, impact=facts.impact, currency="USD",
        period=f"{facts.start}/{facts.end}" if facts.start and facts.end else (facts.start or ""),
        forecast=False, new_spend=facts.new_spend, increase_pct=facts.increase_pct,
    )
    fields = cost_fields(cost, provider="aws", kind="anomaly", extra={
        "parse_status": "ok",
        "account": facts.account_id,
        "anomaly_id": facts.anomaly_id,
        "dimensional_value": facts.dimensional_value,
        "monitor_arn": facts.monitor_arn,
        "subscription_id": facts.subscription_id,
        "subscription_name": facts.subscription_name,
        "anomaly_start": facts.start,
        "anomaly_end": facts.end,
        "max_impact": plain(facts.max_impact) if facts.max_impact is not None else None,
        "anomaly_score": plain(facts.current_score) if facts.current_score is not None else None,
        "pct_source": facts.pct_source,
        "topic_arn": _opt_str(envelope.get("TopicArn")),
    })
    links = (Link(facts.details_link, "Anomaly details (AWS Cost Anomaly Detection)"),) if facts.details_link else ()
    return Alert(
        source=SOURCE,
        source_event_id=str(envelope.get("MessageId") or f"aws-cad:{facts.anomaly_id}"),
        received_at=received_at,
        title=_anomaly_title(facts),
        message=_anomaly_message(facts),
        state=AlertState.FIRING,
        group_key=f"aws-cad:{facts.anomaly_id}",
        tags=_root_cause_tags(facts.root_causes),
        service=facts.main_service,
        dimensions=cost_dimensions(facts.increase_pct),
        categories=CATEGORIES,
        links=links,
        fields=fields,
        cost=cost,
        raw=dict(envelope),
    )


# ---------------------------------------------------------------------------------------------------------------
# AWS Budgets (cloud-cost.md §2)

_KV_LINE = re.compile(r"^([A-Za-z ]+): (.+?)\s*$", re.M)               # cloud-cost.md §2.2
_HEADER_DATE = re.compile(r"AWS Budget Notification ([A-Z][a-z]+ \d{1,2}, \d{4})")
_ACCOUNT_LINE = re.compile(r"^AWS Account (\S+)\s*$", re.M)
_LINK_LINE = re.compile(r"^\[1\] (https://\S+)\s*$", re.M)
_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<|=)?\s*(.+)$")
# The opening sentence names the period: "... is greater than $0.75 per day. Yesterday, ..." (daily) or
# "... for the current month." (monthly), from the captured messages in fixtures/aws-budgets/. Quarter and year
# follow the same wording by inference: no captured example exists.
_PERIODS = (("per day", "daily"), ("for the current month", "monthly"),
            ("for the current quarter", "quarterly"), ("for the current year", "annually"))


@dataclass(frozen=True)
class BudgetFacts:
    """What an AWS Budgets notification text says, and the percentage computed from it.

    `baseline` is what `amount` is compared against (cloud-cost.md §7 pitfall 4): the `Budgeted Amount` for
    period budgets, but the per-day `Alert Threshold` for daily budgets, whose text compares yesterday's cost
    with the per-day line ("greater than $0.75 per day. Yesterday, ... is $1.70"); against the $5.00
    `Budgeted Amount` the same alert would read -66 %.
    `status` is "ok" (all figures found), "partial" (a Budgets text with figures missing) or "unrecognized".
    """

    status: str
    budget_name: str | None = None
    budget_type: str | None = None
    alert_type: str | None = None               # "ACTUAL" | "FORECASTED"
    budgeted_amount: Decimal | None = None
    threshold: Decimal | None = None
    threshold_operator: str | None = None
    amount: Decimal | None = None               # the ACTUAL or FORECASTED amount
    period: str = ""                            # "daily" | "monthly" | "quarterly" | "annually" | ""
    notification_date: date | None = None
    period_start: str | None = None
    account: str | None = None
    console_link: str | None = None
    currency: str = "USD"
    baseline: Decimal | None = None
    baseline_label: str = ""
    increase_pct: Decimal | None = None
    impact: Decimal | None = None
    new_spend: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def forecast(self) -> bool:
        """True for FORECASTED alerts (a prediction, cloud-cost.md §7 pitfall 6)."""
        return (self.alert_type or "").upper() == "FORECASTED"


def _budget_amount(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return parse_amount(text)
    except ValueError:
        return None


def _period_start(period: str, notified: date | None) -> str | None:
    if notified is None:
        return None
    if period == "daily":
        if notified == date.min:
            return None  # "January 01, 0001" has no yesterday (OverflowError); no real notification says that
        return (notified - timedelta(days=1)).isoformat()  # the text reports "Yesterday"'s cost
    if period == "monthly":
        return notified.replace(day=1).isoformat()
    if period == "quarterly":
        return notified.replace(month=(notified.month - 1) // 3 * 3 + 1, day=1).isoformat()
    if period == "annually":
        return notified.replace(month=1, day=1).isoformat()
    return notified.isoformat()


def looks_like_budget_text(text: str) -> bool:
    """True when `text` reads like an AWS Budgets notification (header line or `Budget Name:` line)."""
    return bool(_HEADER_DATE.search(text) or re.search(r"^Budget Name: ", text, re.M))


def parse_budget_text(text: str) -> BudgetFacts:
    """Parse an AWS Budgets SNS `Message` (plain English text, cloud-cost.md §2.2) into `BudgetFacts`.

    Pure and total: it never raises on odd text, it returns `status="unrecognized"` or `"partial"` instead,
    because a Budgets message (for example a budget action, which has no published example) is never dropped.
    """
    if not looks_like_budget_text(text):
        return BudgetFacts(status="unrecognized")
    kv: dict[str, str] = {}
    for key, value in _KV_LINE.findall(text):
        kv.setdefault(key.strip(), value.strip())
    alert_type = (kv.get("Alert Type") or "").upper() or None
    amount_text = kv.get(f"{alert_type} Amount") if alert_type else None
    if amount_text is None:
        amount_text = kv.get("ACTUAL Amount") or kv.get("FORECASTED Amount")
    threshold_text = kv.get("Alert Threshold")
    budgeted_for_pct = _budget_amount(kv.get("Budgeted Amount"))
    operator, threshold = None, None
    if threshold_text:
        m = _THRESHOLD.match(threshold_text)
        if m:
            operator, threshold = m.group(1), _budget_amount(m.group(2))
            if threshold is not None and "%" in m.group(2) and budgeted_for_pct is not None:
                # Rendered as an absolute amount in every captured message; a percentage is handled anyway.
                threshold = budgeted_for_pct * threshold / 100
    budgeted = _budget_amount(kv.get("Budgeted Amount"))
    amount = _budget_amount(amount_text)

    lowered = text.lower()
    period = next((name for phrase, name in _PERIODS if phrase in lowered), "")
    notified: date | None = None
    m = _HEADER_DATE.search(text)
    if m:
        try:
            notified = datetime.strptime(m.group(1), "%B %d, %Y").date()
        except ValueError:
            notified = None
    account_m = _ACCOUNT_LINE.search(text)
    link_m = _LINK_LINE.search(text)

    if period == "daily":
        baseline, baseline_label = threshold, "per-day alert threshold"
    else:
        baseline, baseline_label = budgeted, (f"{period} budget" if period else "budget")
    pct = increase_pct(amount, baseline)
    impact = amount - baseline if amount is not None and baseline is not None else None
    complete = all(v is not None for v in (kv.get("Budget Name"), alert_type, amount, baseline))
    currency_source = amount_text or kv.get("Budgeted Amount") or ""
    known = {"Budget Name", "Budget Type", "Budgeted Amount", "Alert Type", "Alert Threshold",
             "ACTUAL Amount", "FORECASTED Amount"}
    return BudgetFacts(
        status="ok" if complete else "partial",
        budget_name=kv.get("Budget Name"),
        budget_type=kv.get("Budget Type"),
        alert_type=alert_type,
        budgeted_amount=budgeted,
        threshold=threshold,
        threshold_operator=operator,
        amount=amount,
        period=period,
        notification_date=notified,
        period_start=_period_start(period, notified),
        account=account_m.group(1) if account_m else None,
        console_link=link_m.group(1) if link_m else None,
        currency=currency_of(currency_source) if currency_source else "USD",
        baseline=baseline,
        baseline_label=baseline_label,
        increase_pct=pct,
        impact=impact,
        new_spend=is_new_spend(amount, baseline),
        extra={k: v for k, v in kv.items() if k not in known},
    )


def _arn_account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None


def budget_group_key(facts: BudgetFacts, topic_arn: str) -> str | None:
    """`aws-budget:<TopicArn>:<budget name>:<period start>:<alert type>`, or None when a part is unknown.

    Why these parts (cloud-cost.md §7 lists TopicArn + Budget Name + period start + Alert Type + Alert
    Threshold as the dedupe key):
    - the period start makes next month's alert a new incident while this month's repeats update one;
    - ACTUAL and FORECASTED stay apart, so a forecast (which rules may cap lower) never hides an actual overrun;
    - the Alert Threshold is left out on purpose: crossing 80 % and then 100 % of the same budget in the same
      period updates (and may escalate) one incident instead of paging twice. SNS retries are deduplicated on
      `MessageId` (`source_event_id`), not here;
    - budget names are unique per account only, and a topic can receive budgets from several accounts: when the
      message's account differs from the topic's, the budget name part becomes `<account>/<budget name>`.
    """
    if not (facts.budget_name and facts.period_start and facts.alert_type and topic_arn):
        return None
    name = facts.budget_name
    topic_account = _arn_account(topic_arn)
    if facts.account and topic_account and facts.account.isdigit() and facts.account != topic_account:
        name = f"{facts.account}/{name}"
    return f"aws-budget:{topic_arn}:{name}:{facts.period_start}:{facts.alert_type}"


def _budget_title(f: BudgetFacts) -> str:
    kind = "forecast" if f.forecast else "actual"
    if f.amount is None:
        return f"AWS budget {f.budget_name or '?'}: alert threshold exceeded (figures not recognized)"
    vs = f"{format_money(f.amount, f.currency)} vs {format_money(f.baseline, f.currency)} {f.baseline_label}"
    if f.increase_pct is not None:
        tail = f"({format_pct(f.increase_pct)})"
    elif f.new_spend:
        tail = "(new spend, nothing budgeted)"
    else:
        tail = "(percentage unknown)"
    return f"AWS budget {f.budget_name or '?'}: {kind} {vs} {tail}"


def budget_alert(facts: BudgetFacts, envelope: Mapping[str, Any], *, received_at: datetime) -> Alert:
    """The Alert of one AWS Budgets notification (status "ok" or "partial")."""
    topic = str(envelope.get("TopicArn") or "")
    cost = CostFacts(
        actual=facts.amount, expected=facts.baseline, budget=facts.budgeted_amount, threshold=facts.threshold,
        impact=facts.impact, currency=facts.currency, period=facts.period, forecast=facts.forecast,
        new_spend=facts.new_spend, increase_pct=facts.increase_pct,
    )
    fields = cost_fields(cost, provider="aws", kind="budget", extra={
        "parse_status": facts.status,
        "account": facts.account,
        "budget_name": facts.budget_name,
        "budget_type": facts.budget_type,
        "alert_type": facts.alert_type,
        "threshold_amount": plain(facts.threshold) if facts.threshold is not None else None,
        # The threshold as a percentage of the Budgeted Amount (80 for "> $24.00" of $30.00).
        "threshold_pct": plain(pct_of(facts.threshold, facts.budgeted_amount)),
        # Spend as a percentage of the Budgeted Amount (a ratio: 100 means on budget).
        "pct_of_budget": plain(pct_of(facts.amount, facts.budgeted_amount)),
        "baseline": facts.baseline_label or None,
        "period_start": facts.period_start,
        "notification_date": facts.notification_date.isoformat() if facts.notification_date else None,
        "topic_arn": topic or None,
    })
    group_key = budget_group_key(facts, topic) or _fallback_group_key(envelope)
    lines = [line for line in (envelope.get("Message") or "").splitlines() if line.strip()]
    links = (Link(facts.console_link, "AWS Budgets console"),) if facts.console_link else ()
    tags = (("account", facts.account),) if facts.account and facts.account.isdigit() else ()
    return Alert(
        source=SOURCE,
        source_event_id=str(envelope.get("MessageId") or group_key),
        received_at=received_at,
        title=_budget_title(facts),
        message="\n".join(lines),
        state=AlertState.FIRING,  # Budgets never send a recovery (cloud-cost.md §2.1)
        group_key=group_key,
        tags=tags,
        service=None,
        dimensions=cost_dimensions(facts.increase_pct),
        categories=CATEGORIES,
        links=links,
        fields=fields,
        cost=cost,
        raw=dict(envelope),
    )


def _fallback_group_key(envelope: Mapping[str, Any]) -> str:
    # No period or name to group on: identical messages group together, different ones do not. Never a receipt
    # timestamp (STYLE.md "Not to copy").
    digest = hashlib.sha256(
        f"{envelope.get('Subject') or ''}\n{envelope.get('Message') or ''}".encode()).hexdigest()[:16]
    return f"aws-sns:{envelope.get('TopicArn') or 'unknown-topic'}:sha256:{digest}"


def unrecognized_alert(envelope: Mapping[str, Any], *, received_at: datetime) -> Alert:
    """A Notification whose Message is neither an anomaly nor Budgets text: kept as a budget-like cost alert.

    Documented default: `fields["kind"] = "budget"`, `fields["parse_status"] = "unrecognized"`, no percentage
    and no dimension, so the rules can route it (for example to a low-severity "look at this" rule) instead
    of it being dropped (cloud-cost.md §2.1).
    """
    topic = str(envelope.get("TopicArn") or "")
    message = str(envelope.get("Message") or "")
    subject = str(envelope.get("Subject") or "") or next((ln for ln in message.splitlines() if ln.strip()), "")
    topic_name = topic.rsplit(":", 1)[-1] if topic else "unknown topic"
    cost = CostFacts()
    fields = cost_fields(cost, provider="aws", kind="budget", extra={
        "parse_status": "unrecognized",
        "topic_arn": topic or None,
        "account": _arn_account(topic) if topic else None,
    })
    return Alert(
        source=SOURCE,
        source_event_id=str(envelope.get("MessageId") or _fallback_group_key(envelope)),
        received_at=received_at,
        title=f"AWS notification on {topic_name}: {subject[:200] or '(empty message)'}",
        message=message,
        state=AlertState.FIRING,
        group_key=_fallback_group_key(envelope),
        categories=CATEGORIES,
        fields=fields,
        cost=cost,
        raw=dict(envelope),
    )


def alert_from_notification(envelope: Mapping[str, Any], *, received_at: datetime) -> Alert:
    """Decide by the `Message` content which kind of cost notification this is and build its Alert."""
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise BadPayload("SNS Notification has no Message string")
    stripped = message.strip()
    if stripped.startswith("{"):
        try:
            decoded = load_json(stripped, what="SNS Message")
        except BadPayload:
            decoded = None
        if isinstance(decoded, Mapping) and decoded.get("anomalyId"):
            return anomaly_alert(parse_anomaly(decoded), envelope, received_at=received_at)
    facts = parse_budget_text(message)
    if facts.status != "unrecognized":
        return budget_alert(facts, envelope, received_at=received_at)
    return unrecognized_alert(envelope, received_at=received_at)


# ---------------------------------------------------------------------------------------------------------------
# The receiver


def load_envelope(request: InboundRequest) -> dict[str, Any]:
    """The SNS JSON envelope of a request, Lambda key spellings normalized.

    SNS posts `Content-Type: text/plain` (cloud-cost.md §0 point 1), so the body is parsed as JSON whatever
    the content type says. Raw message delivery is refused with a 400: the bare message carries no signature
    (sns-large-payload-raw-message-delivery.md), so nothing proves it came from SNS.
    """
    if request.headers.get("x-amz-sns-rawdelivery", "").strip().lower() == "true":
        raise BadPayload("raw message delivery is enabled on this SNS subscription; raw messages carry no "
                         "signature, so the bridge cannot trust them. Disable it: aws sns set-subscription-"
                         "attributes --attribute-name RawMessageDelivery --attribute-value false",
                         code="sns_raw_delivery")
    try:
        envelope = load_json(request.body)
    except BadPayload as exc:
        raise BadPayload(f"body is not an SNS JSON envelope ({exc.message}; if raw message delivery is enabled "
                         "on the subscription, disable it: raw messages carry no signature)") from None
    if not isinstance(envelope, dict) or envelope.get("Type") not in _MESSAGE_TYPES:
        raise BadPayload("body is not an SNS envelope: expected a JSON object with Type "
                         "Notification, SubscriptionConfirmation or UnsubscribeConfirmation")
    header_type = request.headers.get("x-amz-sns-message-type")
    if header_type and header_type != envelope["Type"]:
        raise BadPayload(f"x-amz-sns-message-type {header_type!r} does not match the body Type "
                         f"{envelope['Type']!r}")
    return normalize_envelope(envelope)


def _setting_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item for item in re.split(r"[,\s]+", value) if item]
    return [str(item) for item in value if str(item)]


def _setting_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class AwsSnsReceiver:
    """Receiver for `POST /webhooks/aws-sns` (see the module docstring for the settings and the contract)."""

    name = SOURCE

    def __init__(self, cert_cache: CertificateCache | None = None) -> None:
        self._certs = cert_cache if cert_cache is not None else CertificateCache()

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Verify the SNS signature, then the TopicArn allowlist (403), then the message age (403).

        Raises BadPayload (raw delivery, not an envelope), AuthError (401: signature, a malformed URL or SNS
        header, certificate), Forbidden (topic not allowed, stale), `CertificateUnavailable` (503: the
        certificate cannot be fetched or is not a PEM; SNS retries a 5xx, so the alert is not lost).
        Everything a sender controls (headers, the envelope's URLs) is checked before any certificate fetch.
        """
        check_sns_headers(request.headers)
        envelope = load_envelope(request)
        allowed = _setting_list(ctx.settings.get("topic_allowlist"))
        if not allowed:
            # Checked before any certificate fetch: an unconfigured bridge must not do network work for anyone.
            raise Forbidden("no SNS topic is allowed: set BRIDGE_SNS_TOPICS to the TopicArn(s) this bridge "
                            "accepts (AWS: \"reject any message with an unexpected TopicArn\")",
                            code="sns_topic_not_allowed")
        load_cert = make_cert_loader(cert_dir=ctx.settings.get("cert_dir") or None,
                                     fetch_url=ctx.services.get("fetch_url"), cache=self._certs)
        verify_message(envelope, now=ctx.now, load_cert=load_cert)

        # After the signature: "reject any message with an unexpected TopicArn" (SendMessageToHttp.verify...).
        topic = str(envelope.get("TopicArn") or "")
        if "*" not in allowed and topic not in allowed:
            raise Forbidden(f"SNS topic {topic} is not in BRIDGE_SNS_TOPICS", code="sns_topic_not_allowed")

        max_age = int(ctx.settings.get("max_age_seconds", DEFAULT_MAX_AGE_SECONDS) or 0)
        if max_age > 0:
            try:
                sent = parse_sns_timestamp(envelope.get("Timestamp"))
            except ValueError:
                raise BadPayload("SNS Timestamp is missing or not ISO 8601") from None
            age = (ctx.now - sent).total_seconds()
            if age > max_age:
                raise Forbidden(f"stale SNS message: sent {int(age)} s ago, more than the {max_age} s allowed "
                                "(BRIDGE_SNS_MAX_AGE); a replay, or a clock out of sync", code="sns_stale")
            if age < -FUTURE_SKEW_SECONDS:
                raise Forbidden(f"SNS message Timestamp is {int(-age)} s in the future; check the clock",
                                code="sns_stale")

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn a verified SNS envelope into one Alert (Notification) or one Notice (subscription messages)."""
        envelope = load_envelope(request)
        kind = envelope["Type"]
        if kind == "Notification":
            return Parsed(alerts=[alert_from_notification(envelope, received_at=ctx.now)])
        if kind == "SubscriptionConfirmation":
            return Parsed(notices=[self._subscription(envelope, ctx)])
        return Parsed(notices=[Notice(
            source=SOURCE, kind="unsubscribed", level="warning",
            message=(f"SNS subscription to {envelope.get('TopicArn')} was deleted; cost alerts from this topic "
                     "no longer arrive. It is not re-subscribed automatically; to undo, visit the "
                     "SubscribeURL in the details or subscribe again."),
            details=_notice_details(envelope),
        )])

    def _subscription(self, envelope: Mapping[str, Any], ctx: ReceiverContext) -> Notice:
        url = str(envelope.get("SubscribeURL") or "")
        details = _notice_details(envelope)
        fetch = ctx.services.get("fetch_url")
        if _setting_bool(ctx.settings.get("auto_confirm")) and fetch is not None:
            # Validate the host like the certificate URL before any GET (cloud-cost.md §3.5 step 2).
            validate_sns_url(url, what="SubscribeURL", require_pem=False)
            try:
                response = fetch(url)
            except Exception as exc:  # reported: the operator can still confirm by hand
                return Notice(source=SOURCE, kind="subscription_pending", level="error",
                              message=(f"could not confirm the SNS subscription to {envelope.get('TopicArn')} "
                                       f"({type(exc).__name__}); visit this URL to confirm it: {url}"),
                              details=details)
            m = re.search(rb"<SubscriptionArn>([^<]+)</SubscriptionArn>", response or b"")
            if m:
                details["SubscriptionArn"] = m.group(1).decode("utf-8", "replace")
            return Notice(source=SOURCE, kind="subscription_confirmed", level="info",
                          message=f"confirmed the SNS subscription to {envelope.get('TopicArn')}",
                          details=details)
        return Notice(source=SOURCE, kind="subscription_pending", level="warning",
                      message=(f"SNS subscription to {envelope.get('TopicArn')} awaits confirmation: visit "
                               f"{url} (the confirmation token expires), or set BRIDGE_SNS_AUTO_CONFIRM=true"),
                      details=details)


def _notice_details(envelope: Mapping[str, Any]) -> dict[str, Any]:
    details = {k: envelope.get(k) for k in ("TopicArn", "MessageId", "Timestamp", "SubscribeURL")}
    return {k: v for k, v in details.items() if v}
