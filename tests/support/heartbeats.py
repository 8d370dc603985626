"""Bodies and rule files for the heartbeat tests: Alertmanager's always-firing Watchdog, and heartbeats on it."""

from __future__ import annotations

from typing import Any


def watchdog_body(fingerprint: str = "e0a1b2c3d4e5f607", starts_at: str = "2026-02-03T10:24:30Z") -> dict[str, Any]:
    """An Alertmanager webhook notification (version 4) carrying the Watchdog alert, as Alertmanager re-sends it
    every repeat_interval."""
    labels = {"alertname": "Watchdog", "severity": "none"}
    return {"version": "4", "groupKey": "{}:{alertname=\"Watchdog\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "incident-bridge", "groupLabels": labels, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "https://alertmanager.example.com",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {}, "startsAt": starts_at,
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "https://prometheus.example.com/graph",
                        "fingerprint": fingerprint}]}


def heartbeats_yaml(every: str = "5m") -> str:
    """A rule file with a Watchdog heartbeat every `every` (P1) and a Datadog canary (P2)."""
    return f"""version: 1
heartbeats:
  - name: prometheus-watchdog
    match: {{source: alertmanager, alertname: Watchdog}}
    every: {every}
    service: monitoring
  - name: datadog-canary
    match: {{source: datadog, monitor_id: "1234567"}}
    every: 30m
    severity: P2
"""
