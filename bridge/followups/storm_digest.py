"""`storm_digest`: one note summarising the alerts of a storm (`storm_digest_text`, `alert_host`: pure)."""

from __future__ import annotations

from typing import Any

from bridge.followups.context import FollowUpContext


def storm_digest(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """One note summarising the alerts attached to a storm incident."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None:
        return
    attached = [a for a in ctx.store.incident_alerts(incident["id"]) if a["outcome"] == "storm"]
    text = storm_digest_text(incident.get("rule"), [a.get("alert") or {} for a in attached])
    now = ctx.clock()
    ctx.store.add_timeline(incident["id"], now, "note", f"storm digest: {len(attached)} alerts attached",
                           "incident-bridge")
    if ctx.rest is not None and ctx.paged(incident["id"]):
        pd_id, _ = ctx.pd_incident(incident)
        ctx.rest.add_note(pd_id, text, f"[incident-bridge:storm:{incident['id']}:{len(attached)}]")


# How many hosts and titles a storm digest names; the rest are counted.
DIGEST_LINES = 20


def alert_host(alert: dict[str, Any]) -> str:
    """The host an alert (as stored, `Alert.to_dict`) fired on: the source's hostname, a `host:` tag, or its scope."""
    fields = alert.get("fields") or {}
    if fields.get("hostname"):
        return str(fields["hostname"])
    for tag in alert.get("tags") or []:
        key, value = (tag[0], tag[1]) if isinstance(tag, (list, tuple)) else (str(tag).partition(":")[::2])
        if key == "host" and value:
            return str(value)
    return str(fields.get("scope") or "")


def storm_digest_text(rule: str | None, alerts: list[dict[str, Any]]) -> str:
    """The storm digest note: how many alerts attached, on which hosts (with counts) and with which titles."""
    hosts: dict[str, int] = {}
    titles: dict[str, int] = {}
    for alert in alerts:
        host = alert_host(alert)
        if host:
            hosts[host] = hosts.get(host, 0) + 1
        title = str(alert.get("title") or "")
        titles[title] = titles.get(title, 0) + 1
    lines = [f"Alert storm: {len(alerts)} alerts of rule {rule or '-'} attached to this incident instead of paging "
             "separately."]
    if hosts:
        lines.append(f"Hosts ({len(hosts)}):")
        lines += _counted(hosts)
    lines.append(f"Alerts ({len(titles)} distinct titles):")
    lines += _counted(titles)
    return "\n".join(lines)


def _counted(counts: dict[str, int]) -> list[str]:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [f"- {name}: {n}" for name, n in top[:DIGEST_LINES]]
    if len(top) > DIGEST_LINES:
        out.append(f"- and {len(top) - DIGEST_LINES} more ({sum(n for _, n in top[DIGEST_LINES:])} alerts)")
    return out
