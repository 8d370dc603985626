"""PagerDuty Events API v2: the event we send for a decided alert, and the client that sends it.

We call the Events API directly with httpx2 (the HTTP library of the `pagerduty` package) so that there is ONE
retry owner: our persisted outbox. The `pagerduty` client retries 429 forever and sleeps inside the request
(reference/pagerduty.md §3.5), which would block the worker and fight our schedule.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpx2
from tenacity import RetryCallState, wait_random_exponential

from bridge import __version__
from bridge.errors import DeliveryError
from bridge.model import Alert, Decision, display_title
from bridge.preflight import CA_BUNDLE_SETTING

__all__ = ["EventsClient", "build_event", "classify", "display_title", "retry_delay"]

# Limits from PagerDuty's developer docs (Events API v2, "Trigger Events" and "Overview"):
MAX_SUMMARY = 1024          # payload.summary
MAX_EVENT_BYTES = 512 * 1024  # whole request

# How a route test (`incident-bridge notify test`) marks what it opens in PagerDuty, whichever API opens it: the
# title starts with TEST_TITLE_PREFIX and the incident key (the Events API's dedup_key) with
# TEST_INCIDENT_KEY_PREFIX. One rule recognises every test page, e.g. to keep them out of related incidents.
TEST_TITLE_PREFIX = "[TEST]"
TEST_INCIDENT_KEY_PREFIX = "incident-bridge:test:"
ROUTE_TEST_SUMMARY = f"{TEST_TITLE_PREFIX} incident-bridge routing key test - safe to ignore"


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


def route_test_event(dedup_key: str, sent_by: str) -> dict[str, Any]:
    """The trigger `notify test --events` sends through the routing key: labelled a test in its summary, its dedup
    key (`TEST_INCIDENT_KEY_PREFIX`...) and its details, and resolved right after.

    Severity "info": this checks the key and the path to PagerDuty, not who is paged (`notify test --role` does
    that), so a service that takes urgency from the alert's severity opens it low-urgency and wakes nobody.
    """
    return {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": ROUTE_TEST_SUMMARY,
            "source": "incident-bridge",
            "severity": "info",
            "custom_details": {
                "test": True,
                "purpose": "incident-bridge checks that PAGERDUTY_ROUTING_KEY reaches this service "
                           "(incident-bridge notify test --events). It resolves this alert right away: no action "
                           "needed.",
                "sent_by": sent_by,
            },
        },
        "client": f"incident-bridge {__version__}",
    }


# A server's wait hint longer than this is taken as this: a wrong header must not park a page for a day.
MAX_SERVER_WAIT = 3600.0


def server_wait(headers: Any, now: float | None = None) -> float | None:
    """The seconds a server asked to wait before the next request: `Retry-After` (seconds or an HTTP date) or
    PagerDuty's REST `ratelimit-reset` (seconds), the longer when both; None when neither is there or readable.

    PagerDuty's Events API sends neither on a 429 (../shared/reference/pagerduty.md); a proxy in front of it, or
    the REST API, may: retrying before the hint only earns another 429.
    """
    waits = []
    for name in ("retry-after", "ratelimit-reset"):
        value = str(headers.get(name) or "").strip()
        if not value:
            continue
        try:
            waits.append(float(value))
            continue
        except ValueError:
            pass
        if name == "retry-after":
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            waits.append(moment.timestamp() - (time.time() if now is None else now))
    waits = [w for w in waits if w == w]  # NaN is not a wait
    if not waits:
        return None
    return min(MAX_SERVER_WAIT, max(0.0, max(waits)))


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
        self._host = host_of(base_url)
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
        except httpx2.TransportError as exc:
            raise transport_error("PagerDuty Events API", self._host, exc) from None
        if response.status_code in (200, 201, 202):
            try:
                return dict(response.json())
            except ValueError:
                return {"status": "success"}
        retryable, reason = classify(response.status_code)
        raise DeliveryError(f"PagerDuty answered {response.status_code}: {_error_text(response)}",
                            retryable=retryable, reason=reason, status=response.status_code,
                            retry_after=server_wait(response.headers))


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


def host_of(base_url: str) -> str:
    """`host` or `host:port` of a base URL, for messages (never its path, query or user info)."""
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or base_url}{f':{port}' if port else ''}"


def transport_error(what: str, host: str, exc: BaseException) -> DeliveryError:
    """The retryable DeliveryError for a request to `host` that got no answer: a certificate the bridge does not
    trust (reason "tls", naming BRIDGE_PAGERDUTY_CA_BUNDLE), a timeout ("timeout") or another network error
    ("network"). `what` starts the other messages ("PagerDuty Events API", "PagerDuty REST get incident X:");
    `exc` is httpx2's error, or an error whose cause is.

    Retryable even for a certificate: the page stays queued while the operator sets the CA bundle, and goes out
    once the bridge restarts with it.
    """
    certificate = _certificate_error(exc)
    if certificate is not None:
        reason = certificate.verify_message or certificate.reason or str(certificate)
        return DeliveryError(f"TLS certificate verification failed for {host}: {reason}; if a proxy inspects TLS, "
                             f"set {CA_BUNDLE_SETTING} to its CA file", retryable=True, reason="tls")
    cause = _httpx_error(exc) or exc
    detail = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else ""
    name = type(cause).__name__ + (f": {detail}" if detail else "")
    if isinstance(cause, httpx2.TimeoutException):
        return DeliveryError(f"{what} timed out at {host} ({name})", retryable=True, reason="timeout")
    return DeliveryError(f"{what} unreachable at {host}: network error ({name})", retryable=True, reason="network")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes (or contexts), without looping."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    return next((e for e in _chain(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)


def _httpx_error(exc: BaseException) -> httpx2.TransportError | None:
    return next((e for e in _chain(exc) if isinstance(e, httpx2.TransportError)), None)
