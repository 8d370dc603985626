"""Alert storms: what a storm is counted by, and when one has begun. Pure."""

from __future__ import annotations

from bridge.model import Alert, Decision


def storm_key(alert: Alert, decision: Decision) -> str:
    """What an alert storm is counted by: the rule, and the monitor where the source has monitors (a catch-all
    rule covers many monitors; their alerts are not one storm)."""
    monitor = (alert.fields.get("monitor_id") or alert.fields.get("alertname") or alert.fields.get("kind")
               or "")
    return f"{decision.rule or ''}|{alert.source}|{monitor}"[:512]


def in_storm(recent_incidents: int, threshold: int) -> bool:
    """Whether a new group joins a storm: `recent_incidents` of its storm key opened within the window already
    reach the threshold (0 turns storms off)."""
    return threshold > 0 and recent_incidents >= threshold
