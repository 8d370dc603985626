"""`rules explain`: what the bridge would decide for a raw payload, and why. Pure apart from reading rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.model import Action, Alert
from bridge.receivers import receiver_for
from bridge.receivers.base import Headers, InboundRequest, Parsed, Receiver, ReceiverContext
from bridge.rules.engine import Evaluation, evaluate_traced
from bridge.rules.loader import load_ruleset
from bridge.rules.model import Ruleset


def parse_raw(receiver: Receiver, source: str, body: bytes, settings: Settings, now: datetime) -> Parsed:
    """Parse a raw body as the provider sends it, without authentication and without any network access.

    The one place `rules explain`, `rules test` payload cases and `related --payload` build that request.
    """
    content_type = "text/plain; charset=UTF-8" if source == "aws-sns" else "application/json"
    ctx = ReceiverContext(now=now, settings=settings.receivers.get(source.split("/", 1)[0], {}),
                          services={"fetch_url": _no_fetch})
    return receiver.parse(InboundRequest(body=body, headers=Headers({"content-type": content_type})), ctx)


def explain_payload(source: str, body: bytes, rules_path: Path, settings: Settings, *,
                    now: datetime, ruleset: Ruleset | None = None) -> list[dict[str, Any]]:
    """Parse `body` as `source` sends it (no authentication) and explain the decision for each alert.

    `ruleset`: the rules to explain with (the console passes the running ones); by default those at `rules_path`."""
    if ruleset is None:
        ruleset = load_ruleset(rules_path).ruleset
    parsed = parse_raw(receiver_for(source, settings, rules_path), source, body, settings, now)
    out: list[dict[str, Any]] = []
    for alert in parsed.alerts:
        ev = evaluate_traced(alert, ruleset, now)
        d = ev.decision
        why_not = why_not_paged(alert, ev, ruleset)
        out.append({
            "severity": d.severity.name if d.severity else None,
            "action": d.action.value,
            "rule": d.rule,
            "roles": list(d.roles),
            "urgency": d.urgency,
            "reasons": list(d.reasons),
            "why_not_paged": why_not,
            "dimension_values": ev.dimension_values,
            "thresholds_crossed": ev.thresholds,
            "categories": sorted(d.categories),
            "group_key": d.group_key,
            "rules_considered": [{"rule": t.rule, "where": t.where, "matched": t.matched,
                                  "applied": t.applied, "failed_conditions": t.failed} for t in ev.considered],
            "rules_skipped_by_index": ev.skipped_by_index,
            "ruleset": ruleset.hash,
            "alert": alert.to_dict(include_raw=False),
        })
    for notice in parsed.notices:
        out.append({"severity": None, "action": "record", "rule": None, "roles": [], "reasons":
                    [f"{notice.kind}: {notice.message}"], "notice": notice.kind})
    return out


def why_not_paged(alert: Alert, ev: Evaluation, ruleset: Ruleset) -> list[str]:
    """Why the decision does not page, from the decision and its trace (empty when it pages)."""
    d = ev.decision
    if d.action is Action.PAGE:
        return []
    out: list[str] = []
    applied = [t.rule for t in ev.considered if t.applied]
    if not applied and d.rule is None:
        out.append("no rule matched")
    if d.action is Action.RESOLVE:
        out.append("the source says the alert recovered: a recovery resolves an incident, it never pages")
        return out
    by_name = {r.name: r for r in ruleset.rules}
    forced = next((by_name[n] for n in applied if n in by_name and by_name[n].action in (Action.SUPPRESS,
                                                                                         Action.RECORD)), None)
    if forced is not None and forced.action is not None:
        out.append(f"rule {forced.name} says {forced.action.value}")
    elif d.severity is None:
        below = sorted(name for name in ev.dimension_values if name not in ev.thresholds)
        out.append("no severity" + (f": {', '.join(below)} below every threshold" if below else
                                    ": no dimension, category or severity from the rules"))
    elif alert.cost is not None and d.reasons:
        out.append(d.reasons[-1])  # the cost limit that held it back: the engine's last reason
    return out


def format_explanation(item: dict[str, Any]) -> str:
    """Human-readable text of one explanation."""
    if "notice" in item:
        return f"notice: {item['reasons'][0]}\n"
    alert = item["alert"]
    lines = [f"alert: {alert['title']}  [{alert['source']}, {alert['state']}]",
             f"decision: {item['action']}  severity {item['severity'] or '-'}  urgency {item['urgency'] or '-'}"
             f"  rule {item['rule'] or '-'}",
             f"roles: {', '.join(item['roles']) or '-'}",
             "dimension values: " + (", ".join(f"{k}={v:g}" for k, v in item["dimension_values"].items()) or "none"),
             "thresholds crossed: " + (", ".join(f"{k}: {v}" for k, v in item["thresholds_crossed"].items())
                                       or "none"),
             "rules considered:"]
    for t in item["rules_considered"]:
        mark = "applied" if t["applied"] else ("matched" if t["matched"] else "no match")
        detail = "" if t["matched"] else "  (" + "; ".join(t["failed_conditions"]) + ")"
        lines.append(f"  - {t['rule']} [{t['where']}]: {mark}{detail}")
    if item["rules_skipped_by_index"]:
        lines.append(f"  ({item['rules_skipped_by_index']} rules skipped by the index: they cannot match)")
    lines.append("reasons:")
    lines.extend(f"  - {r}" for r in item["reasons"])
    return "\n".join(lines) + "\n"


def _no_fetch(url: str) -> bytes:
    raise RuntimeError(f"rules explain does not fetch anything ({url})")
