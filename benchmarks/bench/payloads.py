"""The alert bodies: Datadog webhooks of about 1 KB (the fields a real monitor webhook carries, like
`webhooks/datadog/examples/`), the same storm as Alertmanager alerts, and the template wrk fills in."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

# The storm's five monitors: (monitor id, title after the "[Triggered on {host:...}]" prefix, metric).
MONITORS = (
    ("7100001", "Disk full", "system.disk.in_use"),
    ("7100002", "CPU saturated", "system.cpu.user"),
    ("7100003", "Memory pressure", "system.mem.pct_usable"),
    ("7100004", "Disk latency high", "system.io.await"),
    ("7100005", "Packet loss", "system.net.packet_loss"),
)

# Placeholders of the wrk template (benchmarks/wrk/unique_id.lua replaces them per request).
RUN = "__RUN__"
N = "__N__"


def datadog_event(*, event_id: str, monitor_id: str, title: str, scope: str, tags: str, metric: str,
                  value: str = "27", date_ms: int | None = None) -> dict[str, Any]:
    """A Datadog monitor webhook as the bridge's documented template sends it (about 1 KB as JSON)."""
    date = str(date_ms if date_ms is not None else int(time.time() * 1000))
    return {
        "id": event_id,
        "alert_id": monitor_id,
        "transition": "Triggered",
        "alert_type": "error",
        "priority": "P1",
        "title": f"[P1] {title}",
        "alert_title": title,
        "text": (f"{title}.\nRunbook: https://runbooks.example.com/monitors/{monitor_id}\n\n"
                 f"bridge.value: {value}\nbridge.threshold: 20.0\n\n@webhook-incident-bridge\n\n"
                 f"avg:{metric} over {scope} was > 20.0 on average during the last 5m."),
        "status": f"avg:{metric} over {scope} was > 20.0 on average during the last 5m",
        "query": f"avg(last_5m):avg:{metric}{{env:prod}} by {{host}} > 20",
        "metric": metric,
        "scope": scope,
        "tags": tags,
        "hostname": "",
        "event_type": "query_alert_monitor",
        "date": date,
        "last_updated": date,
        "link": f"https://app.datadoghq.com/event/event?id={event_id}",
        "org": {"id": "1200345", "name": "Example Shop"},
    }


def encode(event: dict[str, Any]) -> bytes:
    """Compact JSON, as Datadog sends it."""
    return json.dumps(event, separators=(",", ":")).encode()


def unique_body(run: str, i: int) -> bytes:
    """Alert `i` of a stream where each alert is its own incident: unique event id, monitor and scope, at
    Datadog's size. Storms never merge these: a storm is counted per rule and monitor."""
    return encode(datadog_event(
        event_id=f"{run}-{i}", monitor_id=str(100000 + i),
        title=f"[Triggered on {{service:svc-{i}}}] Error rate high", scope=f"service:svc-{i},env:prod",
        tags=f"monitor,dimension:users_affected_pct,service:svc-{i},env:prod,team:payments",
        metric="checkout.errors.failed_users_pct"))


def wrk_template() -> str:
    """The body `unique_body` makes, with `__RUN__` and `__N__` where wrk puts its run tag and counter."""
    event = datadog_event(
        event_id=f"{RUN}-{N}", monitor_id=N,
        title=f"[Triggered on {{service:svc-{N}}}] Error rate high", scope=f"service:svc-{N},env:prod",
        tags=f"monitor,dimension:users_affected_pct,service:svc-{N},env:prod,team:payments",
        metric="checkout.errors.failed_users_pct")
    return json.dumps(event, separators=(",", ":"))


def storm_alert(i: int, hosts: int) -> tuple[int, int]:
    """(monitor index, host number) of storm alert `i`: every monitor fires on every host in turn."""
    return i % len(MONITORS), (i // len(MONITORS)) % hosts


def storm_body(run: str, i: int, hosts: int) -> bytes:
    """Storm alert `i`: one of 5 monitors (alert_id = monitor id, one title per monitor), scope host:host-N,
    unique event id."""
    m, h = storm_alert(i, hosts)
    monitor_id, name, metric = MONITORS[m]
    return encode(datadog_event(
        event_id=f"{run}-{i}", monitor_id=monitor_id, title=f"[Triggered on {{host:host-{h}}}] {name}",
        scope=f"host:host-{h}", tags=f"monitor,dimension:users_affected_pct,host:host-{h},env:prod",
        metric=metric))


def rfc3339(moment: dt.datetime) -> str:
    """Alertmanager API v2 time format."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def am_storm_body(run: str, i: int, hosts: int) -> bytes:
    """Storm alert `i` as Prometheus posts it to Alertmanager's `POST /api/v2/alerts` (a list of one alert).

    Labels are the alert's identity (monitor and host, as the Datadog monitor id + scope); the unique event id
    is an annotation, so a repeat of one monitor on one host updates the same alert, as in the bridge.
    """
    m, h = storm_alert(i, hosts)
    monitor_id, name, metric = MONITORS[m]
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {"alertname": name.replace(" ", ""), "monitor_id": monitor_id, "instance": f"host-{h}",
                   "env": "prod", "severity": "critical", "dimension": "users_affected_pct"},
        "annotations": {"summary": f"[Triggered on {{host:host-{h}}}] {name}", "event_id": f"{run}-{i}",
                        "value": "27", "runbook_url": f"https://runbooks.example.com/monitors/{monitor_id}",
                        "description": f"avg:{metric} over host:host-{h} was > 20.0 on average during the last 5m."},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + dt.timedelta(hours=1)),
        "generatorURL": f"http://prometheus.example.com/graph?g0.expr={metric}",
    }
    return json.dumps([alert], separators=(",", ":")).encode()


def am_unique_body(run: str, i: int) -> bytes:
    """Alert `i` of a stream where each alert is its own Alertmanager group (label `bench_id` unique)."""
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {"alertname": "ErrorRateHigh", "bench": "latency", "bench_id": f"{run}-{i}",
                   "service": f"svc-{i}", "env": "prod", "severity": "critical"},
        "annotations": {"summary": f"[Triggered on {{service:svc-{i}}}] Error rate high", "value": "27"},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + dt.timedelta(hours=1)),
    }
    return json.dumps([alert], separators=(",", ":")).encode()
