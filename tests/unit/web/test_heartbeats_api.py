"""`GET /api/v1/heartbeats` through the real app (Flask test client): each heartbeat of the active rules with its
state, last beat, next due time and incident key; admin only, like the rest of /api/v1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bridge.config import Secret, Settings
from bridge.pipeline.stage import PipelineStage
from bridge.web import create_app
from tests.support.heartbeats import heartbeats_yaml, watchdog_body

ADMIN = "admin-token-for-operators"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
def test_heartbeats_show_their_state_and_need_the_admin_token(tmp_path: Path, rules_copy: Path) -> None:
    (rules_copy / "heartbeats.yaml").write_text(heartbeats_yaml())
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret(ADMIN),
                        receivers={"alertmanager": {"token": ""}}, rules_path=str(rules_copy))
    app = create_app(settings)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN}"}

    assert client.get("/api/v1/heartbeats", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 401

    before = client.get("/api/v1/heartbeats", headers=admin, environ_base=LOOPBACK)
    assert before.status_code == 200
    assert [(h["name"], h["state"], h["last_seen"]) for h in before.get_json()["heartbeats"]] == [
        ("prometheus-watchdog", "waiting", None), ("datadog-canary", "waiting", None)]

    posted = datetime.now(UTC).timestamp()
    r = client.post("/webhooks/alertmanager", data=json.dumps(watchdog_body()), environ_base=LOOPBACK,
                    content_type="application/json")
    assert r.status_code == 202, r.get_data(as_text=True)
    store = app.config["BRIDGE_STORE"]
    PipelineStage(store, lambda: app.config["BRIDGE_HOLDER"].current).drain()

    watchdog, canary = client.get("/api/v1/heartbeats", headers=admin, environ_base=LOOPBACK).get_json()["heartbeats"]
    assert watchdog["state"] == "ok" and watchdog["incident_key"] == "incident-bridge:heartbeat:prometheus-watchdog"
    assert watchdog["match"] == ["source == 'alertmanager'", "alertname == 'Watchdog'"]
    assert (watchdog["every"], watchdog["every_seconds"], watchdog["severity"]) == ("5m", 300, "P1")
    seen = datetime.fromisoformat(watchdog["last_seen"]).timestamp()
    assert posted - 1 <= seen <= posted + 60
    assert datetime.fromisoformat(watchdog["due_at"]).timestamp() == seen + 300
    assert watchdog["incident_id"] is None and watchdog["where"].endswith("heartbeats.yaml:3")
    assert (canary["state"], canary["severity"], canary["last_seen"]) == ("waiting", "P2", None)


def test_the_console_rules_page_lists_the_heartbeats_with_their_state(tmp_path: Path, rules_copy: Path) -> None:
    import re

    (rules_copy / "heartbeats.yaml").write_text(heartbeats_yaml())
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret(ADMIN),
                        receivers={"alertmanager": {"token": ""}}, rules_path=str(rules_copy))
    app = create_app(settings)
    client = app.test_client()
    r = client.post("/webhooks/alertmanager", data=json.dumps(watchdog_body()), environ_base=LOOPBACK,
                    content_type="application/json")
    assert r.status_code == 202, r.get_data(as_text=True)
    PipelineStage(app.config["BRIDGE_STORE"], lambda: app.config["BRIDGE_HOLDER"].current).drain()

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/", environ_base=LOOPBACK).get_data(
        as_text=True))
    assert csrf
    signed = client.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": csrf.group(1)}, environ_base=LOOPBACK)
    assert signed.status_code in (302, 303)
    page = client.get("/ui/rules", environ_base=LOOPBACK).get_data(as_text=True)
    rows = re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert rows == [("prometheus-watchdog", "5m", "ok"), ("datadog-canary", "30m", "waiting")], page
