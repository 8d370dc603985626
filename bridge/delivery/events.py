"""PagerDuty Events API v2: the event we send for a decided alert, and the client that sends it.

We call the Events API directly with httpx2 (the HTTP library of the `pagerduty` package) so that there is ONE
retry owner: our persisted outbox. The `pagerduty` client retries 429 forever and sleeps inside the request
(reference/pagerduty.md §3.5), which would block the worker and fight our schedule.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import httpx2
from tenacity import RetryCallState, wait_random_exponential

from bridge import __version__
from bridge.errors import DeliveryError
from bridge.model import Alert, Decision, display_title

__all__ = ["EventsClient", "build_event", "classify", "display_title", "retry_delay"]

# Limits from PagerDuty's developer docs (Events API v2, "Trigger Events" and "Overview"):
MAX_SUMMARY = 1024          # payload.summary
MAX_EVENT_BYTES = 512 * 1024  # whole request


def build_event(action: str, alert: Alert, decision: Decision, dedup_key: str,
                incident_id: int | None) -> dict[str, Any]:
    """The Events API v2 body for `action` (without `routing_key`, which is added only when sending)."""
    if action != "trigger":
        return {"event_action": action, "dedup_key": dedup_key}
    severity = decision.severity
    assert severity is not None
    # One priority per title: the sender's own ("[P1] [Triggered] ...") is dropped, ours is the only one.
    summary = f"[{severity.name}] {alert.display_title}".strip()
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    details: dict[str, Any] = {
        "severity": severity.name,
        "urgency": decision.urgency,
        "rule": decision.rule,
        "reasons": list(decision.reasons),
        "roles": list(decision.roles),
        "dimensions": dict(decision.dimensions),
        "categories": sorted(decision.categories),
        "source": alert.source,
        "source_event_id": alert.source_event_id,
        "tags": [f"{k}:{v}" if v else k for k, v in alert.tags],
        "incident_bridge_incident": incident_id,
    }
    if alert.cost is not None:
        details["cost"] = alert.cost.to_dict()
    if alert.message:
        details["message"] = alert.message[:4000]
    for key in ("transition", "monitor_id", "scope", "priority", "query", "status"):
        if alert.fields.get(key):
            details[key] = alert.fields[key]
    payload: dict[str, Any] = {
        "summary": summary,
        "source": (alert.fields.get("hostname") or alert.service or alert.source)[:255],
        "severity": severity.event_severity,
        "timestamp": alert.received_at.astimezone(UTC).isoformat(),
        "component": (alert.service or "")[:255] or None,
        "group": alert.source,
        "class": (alert.metric or next(iter(sorted(decision.dimensions)), "") or "")[:255] or None,
        "custom_details": details,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "client": f"incident-bridge {__version__}",
    }
    links = [{"href": link.href, "text": link.text or link.href} for link in alert.links
             if link.href.startswith(("http://", "https://"))]
    if links:
        event["links"] = links[:10]
    return _fit(event)


def _fit(event: dict[str, Any]) -> dict[str, Any]:
    """Trim custom details until the request is within PagerDuty's 512 KB limit."""
    details = event["payload"]["custom_details"]
    for key in ("message", "tags", "reasons"):
        if len(json.dumps(event).encode()) < MAX_EVENT_BYTES - 1024:
            break
        details.pop(key, None)
    return event


def classify(status: int) -> tuple[bool, str]:
    """Whether a PagerDuty answer should be retried, and a bounded reason (a metric label).

    PagerDuty: retry on 429 and 5xx; never retry a 400 (developer docs, Events API v2 "Overview").
    """
    if status == 429:
        return True, "rate_limited"
    if status >= 500:
        return True, "server_error"
    if status in (408,):
        return True, "timeout"
    if status == 400:
        return False, "rejected"
    if status in (401, 403, 404):
        return False, "misconfigured"
    return False, "unexpected_status"


def retry_delay(attempt: int, *, multiplier: float = 2.0, maximum: float = 300.0) -> float:
    """Seconds before retry number `attempt` (1-based): exponential backoff with full jitter (tenacity).

    The attempt count is persisted with the job, so a restarted worker continues the same schedule.
    """
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait_random_exponential(multiplier=multiplier, max=maximum)(state))


class EventsClient:
    """Sends one event per call; raises DeliveryError with a retryable flag. Never logs the routing key."""

    def __init__(self, routing_key: str, base_url: str, *, timeout: float = 10.0,
                 transport: httpx2.BaseTransport | None = None, verify: Any = True) -> None:
        self._routing_key = routing_key
        self._client = httpx2.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                     verify=verify,
                                     headers={"User-Agent": f"incident-bridge/{__version__}"},
                                     follow_redirects=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST the event to /v2/enqueue; return PagerDuty's JSON answer."""
        body = dict(event, routing_key=self._routing_key)
        try:
            response = self._client.post("/v2/enqueue", json=body)
        except httpx2.TimeoutException as exc:
            raise DeliveryError(f"PagerDuty Events API timed out ({type(exc).__name__})", retryable=True,
                                reason="timeout") from None
        except httpx2.TransportError as exc:
            raise DeliveryError(f"PagerDuty Events API unreachable ({type(exc).__name__})", retryable=True,
                                reason="network") from None
        if response.status_code in (200, 201, 202):
            try:
                return dict(response.json())
            except ValueError:
                return {"status": "success"}
        retryable, reason = classify(response.status_code)
        raise DeliveryError(f"PagerDuty answered {response.status_code}: {_error_text(response)}",
                            retryable=retryable, reason=reason, status=response.status_code)


def _error_text(response: httpx2.Response) -> str:
    """PagerDuty's reason, from either error shape: Events `{status, message, errors}` or REST `{error: {...}}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        if "error" in body and isinstance(body["error"], dict):
            err = body["error"]
            return f"{err.get('message', '')} {err.get('errors', '')}".strip()
        parts = [str(body.get("status", "")), str(body.get("message", ""))]
        if body.get("errors"):
            parts.append("; ".join(str(e) for e in body["errors"]))
        return " - ".join(p for p in parts if p)
    return str(body)[:300]
