"""Azure Cost Management budget alerts delivered by an Azure Monitor action group webhook.

Contract with the server (and with `rules explain`):

- `authenticate(request, ctx)` checks the shared secret. Action-group webhooks are **not signed**
  (cloud-cost.md §5.1, `MicrosoftDocs/azure-docs` `articles/azure-monitor/alerts/action-groups.md`), so the
  webhook URL carries an unguessable token: query parameter `token` (the usual form, since an action group
  cannot add headers), header `X-Bridge-Token`, or `Authorization: Bearer` / basic-auth password. Compared in
  constant time and never echoed. Entra ID "Secure Webhook" tokens are not supported yet.
- `parse(request, ctx)` only reads the body (no I/O), so `rules explain` can run it on a saved payload.

Settings (`ctx.settings`): `token` (the shared secret; empty rejects every request).

Both payload shapes are accepted (the action's "Enable the common alert schema" switch picks one; payload
samples: https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-payload-samples):
- legacy `schemaId: "AIP Budget Notification"`: all values are strings; `NotificationThresholdAmount` is an
  absolute amount in one documented sample ("8000.0" of "10000") and a fraction in another ("0.8"): a value
  <= 1 is read as a fraction of `Budget` (inferred, cloud-cost.md §5.1);
- common alert schema with `essentials.monitoringService: "CostAlerts"` (`ThresholdType` Actual or Forecasted):
  amounts are currency-formatted strings ("$11,111.00") and, despite its name, `BudgetThreshold` is the budget
  amount while `NotificationThresholdAmount` is the alert line.
Other common-schema alerts (metric, log, activity log...) are refused with a 400 that says so.
Budgets never send a "resolved" message, so every Alert is FIRING.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.config import reveal
from bridge.errors import AuthError, BadPayload, Forbidden
from bridge.model import Alert, AlertState, CostFacts
from bridge.receivers.base import InboundRequest, Parsed, ReceiverContext, constant_time_equals, presented_token
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

SOURCE = "azure"
CATEGORIES = frozenset({"cloud_cost"})
LEGACY_SCHEMA = "AIP Budget Notification"
COMMON_SCHEMA = "azureMonitorCommonAlertSchema"
TOKEN_HEADER = "X-Bridge-Token"


@dataclass(frozen=True)
class AzureBudgetFacts:
    """One Azure budget notification, either schema, with the percentage decided per cloud-cost.md §7."""

    schema: str                    # "legacy" | "common"
    budget_name: str | None
    budget_id: str                 # a resource id; built from subscription + name for the legacy schema
    threshold_type: str            # "Actual" | "Forecasted"
    budget: Decimal | None
    threshold: Decimal | None      # the alert line as an amount
    threshold_was_fraction: bool
    spent: Decimal | None
    forecast_total: Decimal | None
    currency: str
    budget_start: str | None       # ISO date when it could be read ("2021-11-17"), else as sent
    budget_type: str | None
    subscription_id: str | None
    subscription_name: str | None
    resource_group: str | None
    scope: str | None
    alert_id: str | None
    fired: str | None
    description: str | None

    @property
    def forecast(self) -> bool:
        """A Forecasted alert (a prediction: cloud-cost.md §7 pitfall 6)."""
        return self.threshold_type.lower() == "forecasted"

    @property
    def amount(self) -> Decimal | None:
        """The figure compared with the budget: the forecast total for forecasts, the spend otherwise."""
        if self.forecast and self.forecast_total is not None:
            return self.forecast_total
        return self.spent

    @property
    def increase_pct(self) -> Decimal | None:
        """(amount - budget) / budget x 100, None when the budget is unknown or zero."""
        return increase_pct(self.amount, self.budget)

    @property
    def new_spend(self) -> bool:
        """Something spent against a zero budget."""
        return is_new_spend(self.amount, self.budget)


_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})\b")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def normalize_date(text: str | None) -> str | None:
    """"11/17/2021 5:40:29 PM -08:00" and "6/1/2018" (the documented legacy forms, month first) and
    "2022-11-01" (common schema) become ISO dates, so both schemas give the same group key for one budget."""
    if not text:
        return None
    text = text.strip()
    m = _ISO_DATE.match(text)
    if m:
        return f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
    m = _US_DATE.match(text)
    if m:
        return f"{m.group(3)}-{int(m.group(1)):02d}-{int(m.group(2)):02d}"
    return text


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _money(data: Mapping[str, Any], key: str) -> Decimal | None:
    try:
        return parse_amount(data.get(key))
    except ValueError:
        raise BadPayload(f"Azure budget alert: {key} is not an amount ({data.get(key)!r})") from None


def _threshold(raw: Decimal | None, budget: Decimal | None) -> tuple[Decimal | None, bool]:
    # "0.8" in the budget tutorial, "8000.0" of 10000 in the test action: <= 1 is a fraction (inferred).
    if raw is not None and budget is not None and 0 < raw <= 1:
        return raw * budget, True
    return raw, False


def _legacy_budget_id(d: Mapping[str, Any]) -> str:
    name = _str(d, "BudgetName") or "unknown-budget"
    sub = _str(d, "SubscriptionId")
    if sub and not sub.startswith("<"):
        scope = f"/subscriptions/{sub}"
        if _str(d, "ResourceGroup"):
            scope += f"/resourceGroups/{_str(d, 'ResourceGroup')}"
    elif _str(d, "BillingAccountId"):
        scope = f"/providers/Microsoft.Billing/billingAccounts/{_str(d, 'BillingAccountId')}"
    elif _str(d, "EnrollmentNumber"):
        scope = f"/providers/Microsoft.Billing/billingAccounts/{_str(d, 'EnrollmentNumber')}"
    else:
        scope = f"/subscriptions/{sub or 'unknown'}"
    # The same form the common schema's BudgetId takes, so switching schemas keeps the same incident.
    return f"{scope}/providers/Microsoft.Consumption/budgets/{name}"


def parse_azure_budget(payload: Mapping[str, Any]) -> AzureBudgetFacts:
    """Read an action-group webhook body (either schema) into `AzureBudgetFacts`.

    Raises BadPayload for other schemas, for common-schema alerts that are not budget alerts, and for
    amounts that are not numbers.
    """
    schema_id = payload.get("schemaId")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise BadPayload("Azure alert has no data object")
    if schema_id == LEGACY_SCHEMA:
        budget = _money(data, "Budget")
        threshold, fraction = _threshold(_money(data, "NotificationThresholdAmount"), budget)
        unit = _str(data, "Unit")
        return AzureBudgetFacts(
            schema="legacy", budget_name=_str(data, "BudgetName"), budget_id=_legacy_budget_id(data),
            threshold_type="Actual",  # the legacy schema has no forecast variant
            budget=budget, threshold=threshold, threshold_was_fraction=fraction,
            spent=_money(data, "SpendingAmount"), forecast_total=None,
            currency=unit or currency_of(str(data.get("SpendingAmount") or "")),
            budget_start=normalize_date(_str(data, "BudgetStartDate")), budget_type=_str(data, "BudgetType"),
            subscription_id=_str(data, "SubscriptionId"), subscription_name=_str(data, "SubscriptionName"),
            resource_group=_str(data, "ResourceGroup"), scope=None, alert_id=None, fired=None, description=None,
        )
    if schema_id == COMMON_SCHEMA:
        essentials = _obj(data.get("essentials"))
        service = essentials.get("monitoringService")
        if service != "CostAlerts":
            raise BadPayload(
                f"this Azure endpoint takes budget alerts only (monitoringService \"CostAlerts\"), got "
                f"{service!r}: send other Azure Monitor alerts through a separate action group to their own "
                "receiver", code="azure_not_budget")
        d = _obj(_obj(data.get("alertContext")).get("AlertData"))
        if not d:
            raise BadPayload("Azure CostAlerts alert has no alertContext.AlertData")
        budget = _money(d, "BudgetThreshold")  # the budget amount, despite its name
        threshold, fraction = _threshold(_money(d, "NotificationThresholdAmount"), budget)
        scope = _str(d, "Scope")
        sub_m = re.search(r"/subscriptions/([^/]+)", scope or "", re.I)
        return AzureBudgetFacts(
            schema="common", budget_name=_str(d, "BudgetName"),
            budget_id=_str(d, "BudgetId") or f"{(scope or '').rstrip('/')}/budgets/{_str(d, 'BudgetName')}",
            threshold_type=_str(d, "ThresholdType") or "Actual",
            budget=budget, threshold=threshold, threshold_was_fraction=fraction,
            spent=_money(d, "SpentAmount"), forecast_total=_money(d, "ForecastedTotalForPeriod"),
            currency=_str(d, "Unit") or currency_of(str(d.get("SpentAmount") or "")),
            budget_start=normalize_date(_str(d, "BudgetStartDate")), budget_type=_str(d, "BudgetType"),
            subscription_id=sub_m.group(1) if sub_m else None, subscription_name=None, resource_group=None,
            scope=scope, alert_id=_str(essentials, "alertId"), fired=_str(essentials, "firedDateTime"),
            description=_str(essentials, "description"),
        )
    raise BadPayload(f"unknown Azure schemaId {schema_id!r}: expected {LEGACY_SCHEMA!r} or {COMMON_SCHEMA!r} "
                     "(an action group webhook on a budget)", code="azure_unknown_schema")


def group_key(f: AzureBudgetFacts) -> str:
    """`azure-budget:<budget resource id>:<budget start date>:<actual|forecasted>` (lower-case id).

    Why (cloud-cost.md §7 lists SubscriptionId + BudgetName + BudgetStartDate for the legacy schema and BudgetId
    + BudgetStartDate + ThresholdType + NotificationThresholdAmount for the common one): the threshold is left
    out so that crossing 80 % and then 100 % updates one incident, as for AWS and GCP; Actual and Forecasted
    stay apart so a forecast never hides an actual overrun. Azure resource ids are case-insensitive, hence
    lower case. Limitation: BudgetStartDate is the budget's start, not the current period's, so an incident
    left open across a reset is updated by the next period's alert (budgets never resolve by themselves).
    """
    kind = "forecasted" if f.forecast else "actual"
    return f"azure-budget:{f.budget_id.lower()}:{f.budget_start or 'unknown-start'}:{kind}"


def budget_alert(f: AzureBudgetFacts, *, event_id: str, received_at: datetime, raw: Any) -> Alert:
    """The Alert of one Azure budget notification."""
    cost = CostFacts(
        actual=f.amount, expected=f.budget, budget=f.budget, threshold=f.threshold,
        impact=(f.amount - f.budget if f.amount is not None and f.budget is not None else None),
        currency=f.currency, period=f.budget_start or "", forecast=f.forecast, new_spend=f.new_spend,
        increase_pct=f.increase_pct,
    )
    fields = cost_fields(cost, provider="azure", kind="budget", extra={
        "parse_status": "ok",
        "schema": f.schema,
        "account": f.subscription_id,
        "budget_name": f.budget_name,
        "budget_id": f.budget_id,
        "budget_type": f.budget_type,
        "threshold_type": f.threshold_type,
        "threshold_amount": plain(f.threshold) if f.threshold is not None else None,
        "threshold_pct": plain(pct_of(f.threshold, f.budget)),
        "spent_amount": plain(f.spent) if f.spent is not None else None,
        "forecast_amount": plain(f.forecast_total) if f.forecast_total is not None else None,
        "budget_start": f.budget_start,
        "subscription_name": f.subscription_name,
        "resource_group": f.resource_group,
        "scope": f.scope,
        "alert_id": f.alert_id,
        "fired_at": f.fired,
    })
    kind = "forecast" if f.forecast else "actual"
    if f.increase_pct is not None:
        pct = format_pct(f.increase_pct)
    elif f.new_spend:
        pct = "new spend, zero budget"
    else:
        pct = "percentage unknown"
    title = (f"Azure budget {f.budget_name or '?'}: {kind} {format_money(f.amount, f.currency)} vs "
             f"{format_money(f.budget, f.currency)} budget ({pct})")
    lines = [f.description or "",
             f"Budget {f.budget_name} ({f.budget_id}), started {f.budget_start or '?'}",
             f"Spent {format_money(f.spent, f.currency)}"
             + (f", forecast {format_money(f.forecast_total, f.currency)}" if f.forecast_total is not None else "")
             + f", budget {format_money(f.budget, f.currency)}, alert line {format_money(f.threshold, f.currency)}"]
    tags = []
    if f.subscription_id:
        tags.append(("subscription", f.subscription_id))
    if f.resource_group:
        tags.append(("resource_group", f.resource_group))
    return Alert(
        source=SOURCE,
        source_event_id=event_id,
        received_at=received_at,
        title=title,
        message="\n".join(line for line in lines if line),
        state=AlertState.FIRING,
        group_key=group_key(f),
        tags=tuple(tags),
        dimensions=cost_dimensions(f.increase_pct),
        categories=CATEGORIES,
        fields=fields,
        cost=cost,
        raw=raw,
    )


def body_event_id(payload: Any) -> str:
    """`sha256:<hex>` of the canonical JSON body.

    Not `essentials.alertId`: both documented CostAlerts samples carry the same alertId
    (`.../alerts/Test_Alert`) for different notifications, and the legacy schema has none. An action-group
    retry resends the same body, so the hash makes receipt idempotent without merging distinct alerts.
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class AzureReceiver:
    """Receiver for `POST /webhooks/azure` (see the module docstring for settings and contract)."""

    name = SOURCE

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Check the shared secret; raises Forbidden (not configured) or AuthError (missing or wrong)."""
        expected = reveal(ctx.settings.get("token"))
        if not expected:
            raise Forbidden("no Azure webhook token is configured: set BRIDGE_AZURE_TOKEN and put it in the "
                            "action group's webhook URL (?token=...)", code="azure_token_not_configured")
        given = (request.headers.get(TOKEN_HEADER) or request.query.get("token")
                 or presented_token(request.headers) or "")
        if not given:
            raise AuthError("missing token: add ?token=<BRIDGE_AZURE_TOKEN> to the action group's webhook URL",
                            code="azure_no_token")
        if not constant_time_equals(given, expected):
            raise AuthError("wrong token", code="azure_bad_token")  # never echo either value

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn an action-group webhook body into one budget Alert."""
        try:
            payload = load_json(request.body)
        except BadPayload as exc:
            raise BadPayload(f"{exc.message}: expected an Azure action group webhook body") from None
        if not isinstance(payload, dict):
            raise BadPayload("body is not a JSON object")
        facts = parse_azure_budget(payload)
        return Parsed(alerts=[budget_alert(facts, event_id=body_event_id(payload), received_at=ctx.now,
                                           raw=payload)])
