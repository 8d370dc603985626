"""Rendering: `IncidentFacts` in, the Markdown draft out (`build_context` makes the variables every template sees,
listed in the docstring of `bridge.postmortem`). Pure: `now` is a parameter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2

from bridge.errors import ConfigError
from bridge.model import (
    BREACH,
    CLOUD_COST_INCREASE_PCT,
    CUSTOMERS_AFFECTED_PCT,
    DATA_LOSS,
    PLATFORM_CATEGORIES,
    SECURITY,
    USERS_AFFECTED_PCT,
)
from bridge.postmortem.formatting import (
    _as_utc,
    _md_link_text,
    format_amount,
    format_datetime,
    format_duration,
    format_pct,
    md_cell,
    md_code,
    md_oneline,
    md_url,
)
from bridge.postmortem.model import TIMELINE_KINDS, IncidentFacts
from bridge.postmortem.templates import DEFAULT_TEMPLATE_NAME, _environment, _syntax_error, default_template

# ------------------------------------------------------------------------------------------------ context


_TO_ASSESS = "_To be assessed:_"


def _impact(facts: IncidentFacts) -> dict[str, dict[str, Any]]:
    """The Confidentiality / Integrity / Availability cells: "Yes" only on recorded evidence, else for humans.

    The absence of a flag is no evidence of "No" (a monitor may simply not measure it), so the cell then keeps the
    template's "Yes / No" for a human to choose.
    """
    cats = facts.categories
    dims = facts.dimensions

    flagged = [c for c in (SECURITY, BREACH) if c in cats]
    if flagged:
        names = " and ".join(f"`{c}`" for c in flagged)
        confidentiality = {"affected": "Yes", "known": True,
                           "details": f"Flagged as a security incident by the rules (category {names}); "
                                      "_describe what data or access was exposed._"}
    else:
        confidentiality = {"affected": "Yes / No", "known": False,
                           "details": f"{_TO_ASSESS} the rules did not flag a security incident."}

    # Only data loss or corruption compromises integrity; a breach is about confidentiality.
    if DATA_LOSS in cats:
        integrity = {"affected": "Yes", "known": True,
                     "details": "Data loss flagged by the rules (category `data_loss`); "
                                "_describe which data, how much, and whether it was recovered._"}
    else:
        integrity = {"affected": "Yes / No", "known": False,
                     "details": f"{_TO_ASSESS} the rules did not flag data loss or corruption."}

    users = dims.get(USERS_AFFECTED_PCT)
    customers = dims.get(CUSTOMERS_AFFECTED_PCT)
    affected = []
    if users is not None and users > 0:
        affected.append(f"{format_pct(users)} of users affected")
    if customers is not None and customers > 0:
        affected.append(f"{format_pct(customers)} of customers affected")
    if affected:
        availability = {"affected": "Yes", "known": True,
                        "details": "; ".join(affected) + " (highest values reported by the monitors)."}
    elif users is None and customers is None:
        availability = {"affected": "Yes / No", "known": False,
                        "details": f"{_TO_ASSESS} no monitor measured affected users or customers."}
    else:
        availability = {"affected": "Yes / No", "known": False,
                        "details": f"{_TO_ASSESS} the monitors reported no affected users or customers."}
    return {"confidentiality": confidentiality, "integrity": integrity, "availability": availability}


def _cost(facts: IncidentFacts) -> dict[str, Any] | None:
    cost = facts.cost
    dim_pct = facts.dimensions.get(CLOUD_COST_INCREASE_PCT)
    if cost is None and dim_pct is None:
        return None
    currency = cost.currency if cost else "USD"
    actual = format_amount(cost.actual, currency) if cost and cost.actual is not None else None
    expected = format_amount(cost.expected, currency) if cost and cost.expected is not None else None
    pct_value = cost.increase_pct if cost and cost.increase_pct is not None else dim_pct
    increase_pct = format_pct(pct_value) if pct_value is not None else None
    new_spend = bool(cost and cost.new_spend)

    # Expected spend of zero is "new spend", never a percentage (CostFacts docs).
    head = "new spend" if new_spend else (f"+{increase_pct}" if increase_pct else "increase of unknown size")
    amounts = []
    if actual:
        amounts.append(f"{'forecast' if cost and cost.forecast else 'actual'} {actual}")
    if expected:
        amounts.append(f"expected {expected}")
    if cost and cost.period:
        amounts.append(cost.period)
    text = f"cloud cost {head}" + (f" ({', '.join(amounts)})" if amounts else "")
    return {"actual": actual, "expected": expected, "currency": currency, "increase_pct": increase_pct,
            "new_spend": new_spend, "forecast": bool(cost and cost.forecast),
            "period": cost.period if cost else "", "text": text}


def _timeline(facts: IncidentFacts) -> list[dict[str, Any]]:
    rows = []
    # sorted() is stable: events recorded at the same second keep the store's order.
    for event in sorted(facts.timeline, key=lambda e: _as_utc(e.at)):
        at = _as_utc(event.at)
        label = TIMELINE_KINDS.get(event.kind) or event.kind.replace("_", " ").strip().capitalize() or "Event"
        text = md_cell(event.description)
        rows.append({
            "date": at.strftime("%Y-%m-%d"),
            "time": at.strftime("%H:%M:%S UTC"),
            "kind": event.kind,
            "kind_label": label,
            "description": f"**{label}:** {text}" if text else f"**{label}**",
            "text": text,
            "personnel": md_cell(event.personnel),
            "actions": md_cell(event.actions),
            "event": event,
        })
    return rows


def _related(facts: IncidentFacts) -> list[dict[str, Any]] | None:
    if facts.related is None:
        return None
    rows = []
    for item in facts.related:
        title = _md_link_text(item.title) or "(untitled)"
        incident = f"[{title}]({md_url(item.link)})" if item.link else title
        moment = _as_utc(item.date) if isinstance(item.date, datetime) else item.date  # a datetime is a date too
        when = moment.strftime("%Y-%m-%d") if moment is not None else ""
        rows.append({"incident": md_cell(incident), "date": when, "similarity": md_cell(item.similarity),
                     "item": item})
    return rows


def _description(facts: IncidentFacts, *, duration: str, opened: str, resolved: str | None,
                 cost: dict[str, Any] | None) -> str:
    """One paragraph: what, where, how long, severity and impact."""
    what = f"**{md_oneline(facts.title)}**"
    if facts.rules:
        names = ", ".join(md_code(r) for r in facts.rules)
        what += f" (rule{'s' if len(facts.rules) > 1 else ''} {names})"
    where = []
    if facts.service:
        where.append(f"on service {md_code(facts.service)}")
    if facts.source:
        where.append(f"reported by {md_oneline(facts.source)}")
    sentences = [what + (" " + ", ".join(where) if where else "") + "."]

    peak = facts.peak_severity
    if peak is not facts.severity:
        sentences.append(f"Severity {peak.name} at its peak ({facts.severity.name} when this draft was made).")
    else:
        sentences.append(f"Severity {peak.name}.")

    if resolved is None:
        sentences.append(f"The incident is still open: first alert at {opened}, {duration} before this draft.")
    else:
        sentences.append(f"It lasted {duration}, from the first alert at {opened} to resolution at {resolved}.")

    impact = []
    for dim, what_of in ((USERS_AFFECTED_PCT, "users"), (CUSTOMERS_AFFECTED_PCT, "customers")):
        value = facts.dimensions.get(dim)
        if value is not None:
            impact.append(f"{format_pct(value)} of {what_of} affected")
    if cost:
        impact.append(cost["text"])
    if impact:
        sentences.append("Impact reported by the monitors: " + "; ".join(impact) + ".")
    else:
        sentences.append("The monitors reported no impact figures.")
    return " ".join(sentences)


def build_context(facts: IncidentFacts, *, now: datetime) -> dict[str, Any]:
    """The variables every post-mortem template sees (documented in the module docstring)."""
    opened = format_datetime(facts.opened_at)
    resolved = format_datetime(facts.resolved_at) if facts.resolved_at is not None else None
    end = facts.resolved_at if facts.resolved_at is not None else now
    duration = format_duration(_as_utc(end) - _as_utc(facts.opened_at))
    if resolved is None:
        duration_text = f"still open ({duration} since the first alert at {opened}, as of this draft)"
    else:
        duration_text = f"{duration} (first alert {opened} to resolution {resolved})"

    cost = _cost(facts)
    users = facts.dimensions.get(USERS_AFFECTED_PCT)
    customers = facts.dimensions.get(CUSTOMERS_AFFECTED_PCT)
    revenue = "_estimated or N/A_"
    if cost:
        revenue += f" (to be written; {cost['text']})"
    blast_radius = {
        "users": f"{format_pct(users)} (highest reported by the monitors)" if users is not None
        else "_number or percentage_",
        "customers": f"{format_pct(customers)} (highest reported by the monitors)" if customers is not None
        else "_number or percentage_",
        "revenue": revenue,
        "duration": duration_text,
    }

    pagerduty = None
    if facts.pagerduty_incident_id or facts.pagerduty_url:
        pagerduty = {"id": facts.pagerduty_incident_id, "url": facts.pagerduty_url}

    return {
        "facts": facts,
        "key": facts.key,
        "title": facts.title,
        "status": facts.status,
        "service": facts.service,
        "source": facts.source,
        "severity": facts.severity.name,
        "highest_severity": facts.peak_severity.name,
        "severity_changed": facts.peak_severity is not facts.severity,
        "pagerduty": pagerduty,
        "drafted_at": format_datetime(now),
        "opened_at": opened,
        "resolved_at": resolved,
        "is_open": resolved is None,
        "duration": duration,
        "duration_text": duration_text,
        "description": _description(facts, duration=duration, opened=opened, resolved=resolved, cost=cost),
        "rules": list(facts.rules),
        "categories": sorted(facts.categories),
        "platform_categories": sorted(facts.categories & PLATFORM_CATEGORIES),
        "dimensions": dict(facts.dimensions),
        "roles": [{"role": role, "holder": holder} for role, holder in facts.roles.items()],
        "timeline": _timeline(facts),
        "impact": _impact(facts),
        "blast_radius": blast_radius,
        "cost": cost,
        "related": _related(facts),
    }


def _template_line(exc: BaseException, name: str) -> int:
    # Jinja2 rewrites tracebacks so that frames of template code carry the template's name and line.
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_postmortem(facts: IncidentFacts, template: str | None = None, *, now: datetime,
                      template_name: str = "<template>") -> str:
    """The post-mortem draft of `facts` as Markdown.

    `template` is Jinja2 source (None = the shipped template); `template_name` names it in errors (pass the
    file's path). `now` is the drafting time shown in the header and, while the incident is open, the end of
    its duration. Raises ConfigError (with the template's line when known) when a custom template is broken.
    """
    name = DEFAULT_TEMPLATE_NAME if template is None else template_name
    source = default_template() if template is None else template
    env = _environment()
    try:
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, name) from exc
    context = build_context(facts, now=now)
    try:
        return compiled.render(context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc, "<template>")
        raise ConfigError(f"post-mortem template failed: {exc}", path=name, line=line,
                          hint="use only the variables listed in bridge/postmortem/__init__.py") from exc
