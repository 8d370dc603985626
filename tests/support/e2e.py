"""Helpers shared by the end-to-end tests (tests/integration/): Datadog webhook bodies posted to a real bridge,
and a PagerDuty account with users, escalation policies and a service for the tests of who gets paged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, FakePagerDuty
from tests.support.server import ROUTING_KEY, BridgeProcess, bridge_env, decided
from tests.support.shared import copy_shipped_rules

# -- Datadog alerts --------------------------------------------------------------------------------------------


def datadog_payload(event_id: str, *, transition: str = "Triggered", value: float = 27.4,
                    monitor: str = "183664512", scope: str = "env:prod, service:checkout",
                    dimension: str = "users_affected_pct", cycle: str = "") -> dict[str, Any]:
    """A body as the shipped payload template renders it."""
    return {
        "id": event_id, "alert_id": monitor, "alert_cycle_key": cycle, "aggreg_key": "",
        "transition": transition, "alert_type": "success" if transition == "Recovered" else "error",
        "priority": "P1", "title": f"[{transition} on {{{scope}}}] Checkout: users cannot pay",
        "text": f"Users failing.\nbridge.value: {value}\n@webhook-incident-bridge",
        "metric": "checkout.payment.failed_users_pct", "scope": scope,
        "tags": f"monitor,dimension:{dimension},env:prod,service:checkout",
        "event_type": "query_alert_monitor", "date": "1767350520000",
        "link": f"https://app.datadoghq.com/event/event?id={event_id}",
    }


def post_alert(bridge: BridgeProcess, payload: dict[str, Any]) -> dict[str, Any]:
    response = bridge.post("/webhooks/datadog", json.dumps(payload))
    assert response.status_code in (200, 202), response.text
    return decided(response)  # with each alert's outcome as the pipeline stage decided it


# -- a PagerDuty account and the shipped rules, for who gets paged --------------------------------------------

USERS = (
    {"id": "PUSER01", "name": "Bridge Bot", "email": FROM_EMAIL},
    {"id": "PUEM001", "name": "Erin Manager", "email": "erin@example.com"},
    {"id": "PUSD001", "name": "Sam Senior", "email": "sam@example.com"},
    {"id": "PUPE001", "name": "Pat Platform", "email": "pat@example.com"},
    {"id": "PUPM001", "name": "Parker Product", "email": "parker@example.com"},
    {"id": "PUIS001", "name": "Ivy InfoSec", "email": "ivy@example.com"},
    {"id": "PUCS001", "name": "Carla Support", "email": "carla@example.com"},
    {"id": "PUCX001", "name": "Casey Success", "email": "casey@example.com"},
)
POLICIES = (
    {"id": "PEPEM01", "name": "Engineering Managers", "on_call_user_ids": ["PUEM001"]},
    {"id": "PEPSD01", "name": "Senior Developers", "on_call_user_ids": ["PUSD001"]},
    {"id": "PEPPE01", "name": "Platform Engineering", "on_call_user_ids": ["PUPE001"]},
    {"id": "PEPPM01", "name": "Product Managers", "on_call_user_ids": ["PUPM001"]},
    {"id": "PEPIS01", "name": "InfoSec", "on_call_user_ids": ["PUIS001"]},
    {"id": "PEPCS01", "name": "Customer Support", "on_call_user_ids": ["PUCS001"]},
    {"id": "PEPCX01", "name": "Customer Success", "on_call_user_ids": ["PUCX001"]},
)
SERVICES = ({"id": "PSVC001", "name": "Checkout", "escalation_policy_id": "PEPSD01"},)


def rules_dir(tmp: Path, *, escalate_after: str = "10m", extra_routing: str = "", settings: str = "") -> Path:
    """The shipped rules, with a shorter escalation time and optional extra rules (placed first)."""
    target = copy_shipped_rules(tmp / "rules")
    roles = (target / "roles.yaml").read_text().replace("escalate_after: 10m", f"escalate_after: {escalate_after}")
    (target / "roles.yaml").write_text(roles)
    if extra_routing:
        routing = (target / "routing.yaml").read_text().replace("rules:\n", "rules:\n" + extra_routing, 1)
        (target / "routing.yaml").write_text(routing)
    if settings:
        (target / "settings.yaml").write_text("version: 1\nsettings:\n" + settings)
    return target


def env_for(tmp: Path, pd: FakePagerDuty, rules: Path, **extra: Any) -> dict[str, str]:
    return bridge_env(tmp, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url,
                      PAGERDUTY_API_TOKEN=API_KEY, PAGERDUTY_API_URL=pd.url, PAGERDUTY_FROM=FROM_EMAIL,
                      PAGERDUTY_SERVICE_ID="PSVC001", BRIDGE_PAGERDUTY_CA_BUNDLE=pd.ca_file or "",
                      BRIDGE_RULES=str(rules), **extra)


def pd_incident(pd: FakePagerDuty, key: str) -> Any:
    incidents = pd.incidents_for(key)
    return incidents[-1] if incidents else None


def notes(pd: FakePagerDuty, incident_id: str) -> list[str]:
    return [(r.json() or {})["note"]["content"] for r in pd.requests_to(f"/incidents/{incident_id}/notes", "POST")
            if r.status in (200, 201)]
