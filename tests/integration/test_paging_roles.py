"""End to end: who gets paged, and the lifecycle around an incident, through a real bridge and a stateful
PagerDuty fake (Events API + REST API, every request checked against the published schemas)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import (
    POLICIES,
    SERVICES,
    USERS,
    datadog_payload,
    env_for,
    notes,
    pd_incident,
    post_alert,
    rules_dir,
)
from tests.support.fakes.pagerduty import API_KEY, FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES,
                       events_rate_limit_per_minute=120) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def responder_targets(pd: FakePagerDuty, incident_id: str) -> list[str]:
    """The escalation policy / user ids requested as responders on the incident (from the REST request log)."""
    out = []
    for r in pd.requests_to(f"/incidents/{incident_id}/responder_requests", "POST"):
        if r.status == 200:
            for t in (r.json() or {}).get("responder_request_targets", []):
                out.append(t["responder_request_target"]["id"])
    return out


def test_p0_declares_an_incident_with_priority_roles_and_a_role_note(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        answer = post_alert(bridge, datadog_payload("r1", monitor="7001"))
        key = answer["alerts"][0]["dedup_key"]
        wait_for(lambda: pd_incident(pd, key))
        incident = pd_incident(pd, key)
        wait_for(lambda: len(responder_targets(pd, incident.id)) >= 5, timeout=20)
        targets = responder_targets(pd, incident.id)
        # The four roles of a declared incident, plus Customer Support (users were affected).
        assert set(targets) == {"PEPEM01", "PEPSD01", "PEPPE01", "PEPPM01", "PEPCS01"}
        assert len(targets) == len(set(targets)), "a role was requested twice"
        wait_for(lambda: pd.incident(incident.id).priority_id is not None)
        assert pd.incident(incident.id).priority_id == "PPRI001"  # our P0 -> the account's "P1"
        assert pd.incident(incident.id).urgency == "high"
        [note] = [n for n in notes(pd, incident.id) if "Role assignment" in n]
        for role in ("Incident Coordinator", "Technical Lead", "Infrastructure Lead", "Communications Lead"):
            assert role in note
        assert "Coordinate overall incident response" in note  # the duties from the process
        assert "users_affected_pct = 27.4 is P0" in note       # and why it paged
        local = bridge.get(f"/api/v1/incidents/{key}").json()
        assert local["pagerduty"]["id"] == incident.id
        kinds = [e["kind"] for e in local["timeline"]]
        assert "responder_request" in kinds and "page" in kinds
    finally:
        bridge.kill()


def test_a_higher_severity_raises_priority_and_adds_roles(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        first = post_alert(bridge, datadog_payload("raise-1", monitor="7002", value=6))  # P2
        key = first["alerts"][0]["dedup_key"]
        assert first["alerts"][0]["severity"] == "P2"
        wait_for(lambda: pd.triggers_for(key))
        assert pd.triggers_for(key)[0].body["payload"]["severity"] == "warning"
        second = post_alert(bridge, datadog_payload("raise-2", monitor="7002", value=30))  # P0
        assert second["alerts"][0]["outcome"] == "raised"
        wait_for(lambda: len(pd.triggers_for(key)) == 2)
        assert pd.triggers_for(key)[1].body["payload"]["severity"] == "critical"
        incident = pd_incident(pd, key)
        wait_for(lambda: pd.incident(incident.id).priority_id == "PPRI001", timeout=20)
        wait_for(lambda: "PEPEM01" in responder_targets(pd, incident.id))
        # A lower alert afterwards never lowers it.
        third = post_alert(bridge, datadog_payload("raise-3", monitor="7002", value=6))
        assert third["alerts"][0]["outcome"] == "attached"
        assert bridge.get(f"/api/v1/incidents/{key}").json()["severity"] == "P0"
    finally:
        bridge.kill()


def test_security_engages_infosec_at_any_severity(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        payload = datadog_payload("sec-1", monitor="7003", value=1)  # P3 by value
        payload["tags"] += ",category:security"
        key = post_alert(bridge, payload)["alerts"][0]["dedup_key"]
        wait_for(lambda: pd_incident(pd, key))
        incident = pd_incident(pd, key)
        wait_for(lambda: responder_targets(pd, incident.id))
        assert responder_targets(pd, incident.id) == ["PEPIS01"]  # only InfoSec: a P3 never pages others
    finally:
        bridge.kill()


def test_escalation_to_backup_survives_a_restart(tmp_path: Path, pd: FakePagerDuty) -> None:
    rules = rules_dir(tmp_path, escalate_after="4s")
    env = env_for(tmp_path, pd, rules)
    bridge = BridgeProcess(tmp_path, env).start()
    answer = post_alert(bridge, datadog_payload("esc-1", monitor="7004"))
    key = answer["alerts"][0]["dedup_key"]
    wait_for(lambda: pd_incident(pd, key))
    incident = pd_incident(pd, key)
    wait_for(lambda: "PEPEM01" in responder_targets(pd, incident.id))
    # The Communications Lead accepts; the Incident Coordinator does not. The bridge dies before the deadline.
    pd.answer_responder_request(incident.id, "PUPM001", accepted=True)
    bridge.kill()
    time.sleep(4.5)  # the deadline passes while no bridge runs
    second = BridgeProcess(tmp_path, env).start()
    try:
        # Backup of the Incident Coordinator is Senior Developers (already a responder as Technical Lead, so
        # it is requested again explicitly as the backup); the Communications Lead accepted: no escalation.
        wait_for(lambda: any("Escalation: the Incident Coordinator" in n for n in notes(pd, incident.id)),
                 timeout=20)
        assert not any("Escalation: the Communications Lead" in n for n in notes(pd, incident.id))
        timeline = second.get(f"/api/v1/incidents/{key}").json()["timeline"]
        assert any(e["kind"] == "escalation" for e in timeline)
        assert any(e["kind"] == "acknowledgement" and "Communications Lead" in e["description"]
                   for e in timeline)
    finally:
        second.kill()


def test_accounts_without_responders_or_priorities_still_page(tmp_path: Path) -> None:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES,
                       abilities={"teams", "urgencies"}) as pd:
        bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
        try:
            key = post_alert(bridge, datadog_payload("402-1", monitor="7005"))["alerts"][0]["dedup_key"]
            wait_for(lambda: pd.triggers_for(key))
            incident_id = wait_for(lambda: pd_incident(pd, key)).id
            wait_for(lambda: any("Role assignment" in n for n in notes(pd, incident_id)), timeout=20)
            timeline = bridge.get(f"/api/v1/incidents/{key}").json()["timeline"]
            assert any("not available on this PagerDuty account" in e["description"] for e in timeline)
            jobs = bridge.get("/api/v1/jobs").json()["jobs"]
            assert not [j for j in jobs if j["state"] == "dead"], jobs
            out = bridge.output()
            assert out.count("priorities") >= 1
        finally:
            bridge.kill()
        pd.assert_no_invalid_requests()


def alertmanager_batch(start: int, count: int) -> str:
    alerts = [{"status": "firing", "labels": {"alertname": "DiskFull", "instance": f"node-{i}",
                                              "service": "storage", "dimension": "users_affected_pct"},
               "annotations": {"summary": f"disk full on node-{i}", "value": "7"},
               "startsAt": "2026-11-28T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
               "fingerprint": f"fp{i:06d}"} for i in range(start, start + count)]
    return json.dumps({"version": "4", "status": "firing", "receiver": "bridge", "groupKey": "{}",
                       "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                       "externalURL": "http://alertmanager", "alerts": alerts})


def test_a_storm_of_5000_alerts_becomes_one_incident_within_the_events_rate(tmp_path: Path,
                                                                           pd: FakePagerDuty) -> None:
    rules = rules_dir(tmp_path, settings="  storm_threshold: 1\n  storm_window: 10m\n")
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules)).start()
    try:
        for start in range(0, 5000, 250):
            r = bridge.post("/webhooks/alertmanager", alertmanager_batch(start, 250))
            assert r.status_code == 202, r.text
        bridge.wait_decided()
        incidents = bridge.get("/api/v1/incidents?limit=1000").json()["incidents"]
        assert len(incidents) == 1
        incident = incidents[0]
        assert incident["alert_count"] == 5000
        wait_for(lambda: pd.triggers_for(incident["dedup_key"]))
        time.sleep(2.0)
        events = [e for e in pd.events if e.event_action == "trigger"]
        assert len(events) == 1
        assert len(pd.requests_to("/v2/enqueue")) <= 120
        wait_for(lambda: any(e["kind"] == "note" and "storm digest" in e["description"]
                             for e in bridge.get(f"/api/v1/incidents/{incident['id']}").json()["timeline"]),
                 timeout=90)
    finally:
        bridge.kill()


def test_events_beyond_the_rate_limit_wait_and_the_most_severe_go_first(tmp_path: Path) -> None:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES, tls=False) as pd:
        env = bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url,
                         BRIDGE_EVENTS_PER_MINUTE="5", BRIDGE_RULES=str(rules_dir(tmp_path)))
        bridge = BridgeProcess(tmp_path, env).start()
        try:
            for i in range(8):  # P2 alerts first
                post_alert(bridge, datadog_payload(f"rl-low-{i}", monitor=f"81{i}", value=6))
            for i in range(3):  # then P0 alerts
                post_alert(bridge, datadog_payload(f"rl-high-{i}", monitor=f"82{i}", value=30))
            wait_for(lambda: len(pd.events) >= 5)
            time.sleep(2.0)
            assert len(pd.events) == 5  # the rest wait in the outbox: nothing dropped, nothing over the limit
            counts = bridge.get("/api/v1/jobs").json()["counts"]
            assert counts.get("pending", 0) == 6
            metrics = bridge.get("/metrics").text
            assert 'bridge_delivery_jobs{state="pending"} 6.0' in metrics
        finally:
            bridge.kill()


def test_silence_suppresses_with_owner_and_reason(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        r = bridge.post("/api/v1/silences", json.dumps({
            "matchers": ["service=checkout", "tag:env=prod"], "owner": "alice@example.com",
            "reason": "checkout DB failover drill", "duration": "2h"}))
        assert r.status_code == 201, r.text
        silence_id = r.json()["id"]
        answer = post_alert(bridge, datadog_payload("sil-1", monitor="7006"))
        item = answer["alerts"][0]
        assert item["action"] == "suppress"
        stored = bridge.get(f"/api/v1/alerts/{item['id']}").json()
        assert (f'suppressed by silence {silence_id} (alice@example.com, "checkout DB failover drill")'
                in stored["decision"]["reasons"])
        time.sleep(1.0)
        assert pd.triggers_for(item["dedup_key"]) == []
        listed = bridge.get("/api/v1/silences").json()["silences"]
        assert [s["id"] for s in listed] == [silence_id]
        r = httpx_delete(bridge, f"/api/v1/silences/{silence_id}")
        assert r.status_code == 200
        again = post_alert(bridge, datadog_payload("sil-2", monitor="7006"))
        assert again["alerts"][0]["action"] == "page"
        r = bridge.post("/api/v1/silences", json.dumps({"matchers": ["service=checkout"], "owner": "a",
                                                        "reason": "no end"}))
        assert r.status_code == 400 and "ends_at" in r.json()["message"]
    finally:
        bridge.kill()


def httpx_delete(bridge: BridgeProcess, path: str) -> Any:
    import httpx2

    from tests.support.server import ADMIN_TOKEN

    return httpx2.delete(f"{bridge.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10.0)


def test_inhibition_attaches_lower_alerts_to_the_open_incident(tmp_path: Path, pd: FakePagerDuty) -> None:
    extra = """  - name: checkout-outage
    description: A checkout outage inhibits lower checkout alerts.
    match:
      source: datadog
      monitor_id: "7100"
    inhibits:
      match:
        source: datadog
      equal: [service]
    continue: true

"""
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path, extra_routing=extra))).start()
    try:
        outage = post_alert(bridge, datadog_payload("inh-1", monitor="7100", value=30))["alerts"][0]
        assert outage["severity"] == "P0" and outage["rule"] == "checkout-outage"
        lower = post_alert(bridge, datadog_payload("inh-2", monitor="7101", value=6))["alerts"][0]
        assert lower["outcome"] == "inhibited" and lower["incident_id"] == outage["incident_id"]
        other = datadog_payload("inh-3", monitor="7102", value=6, scope="env:prod, service:search")
        other["tags"] = other["tags"].replace("service:checkout", "service:search")
        assert post_alert(bridge, other)["alerts"][0]["outcome"] == "opened"
        time.sleep(1.0)
        assert pd.triggers_for(lower["dedup_key"]) == []
    finally:
        bridge.kill()


def test_cost_alerts_auto_resolve_after_the_rules_time(tmp_path: Path, pd: FakePagerDuty) -> None:
    rules = rules_dir(tmp_path)
    routing = (rules / "routing.yaml").read_text().replace("auto_resolve_after: 1d", "auto_resolve_after: 3s")
    (rules / "routing.yaml").write_text(routing)
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules, BRIDGE_AZURE_TOKEN="azure-secret-token")).start()
    try:
        body = {"schemaId": "AIP Budget Notification", "data": {
            "SubscriptionName": "prod", "SubscriptionId": "11111111-2222-3333-4444-555555555555",
            "SpendingAmount": "1500", "BudgetStartDate": "11/1/2026", "Budget": "1000", "Unit": "USD",
            "BudgetCreator": "ops@example.com", "BudgetName": "platform", "BudgetType": "Cost",
            "ResourceGroup": "", "NotificationThresholdAmount": "0.8"}}
        r = bridge.post("/webhooks/azure?token=azure-secret-token", json.dumps(body), token=None)
        assert r.status_code == 202, r.text
        item = r.json()["alerts"][0]
        assert item["severity"] == "P1"  # +50 % over budget
        wait_for(lambda: pd.triggers_for(item["dedup_key"]))
        wait_for(lambda: [e for e in pd.events if e.event_action == "resolve" and e.dedup_key == item["dedup_key"]],
                 timeout=30)
        incident = bridge.get(f"/api/v1/incidents/{item['dedup_key']}").json()
        assert incident["status"] == "resolved"
        assert any("auto-resolved" in e["description"] for e in incident["timeline"])
    finally:
        bridge.kill()


def test_reconciliation_marks_incidents_a_human_resolved(tmp_path: Path, pd: FakePagerDuty) -> None:
    # Interval 0: the restart below comes seconds after the first start's pass, and must start another.
    env = env_for(tmp_path, pd, rules_dir(tmp_path), BRIDGE_RECONCILE_INTERVAL="0")
    bridge = BridgeProcess(tmp_path, env).start()
    key = post_alert(bridge, datadog_payload("rec-1", monitor="7007", value=6))["alerts"][0]["dedup_key"]
    incident = wait_for(lambda: pd_incident(pd, key))
    # Killed once it has recorded its page (PagerDuty got it a moment before the bridge records it; a bridge
    # killed in between sends it again at start, which other tests cover).
    wait_for(lambda: any(j["kind"] == "event" and j["state"] == "delivered"
                         for j in bridge.get("/api/v1/jobs").json()["jobs"]))
    bridge.kill()
    rest = pd.rest_client()
    rest.rput(f"/incidents/{incident.id}", json={"incident": {"type": "incident", "status": "resolved"}})
    second = BridgeProcess(tmp_path, env).start()
    try:
        local = wait_for(lambda: (lambda i: i if i["status"] == "resolved" else None)(
            second.get(f"/api/v1/incidents/{key}").json()))
        assert any(e["description"] == "resolved in PagerDuty (found by reconciliation pass 2)"
                   for e in local["timeline"])
    finally:
        second.kill()


def test_resolved_p0_gets_a_postmortem_draft_and_a_note(tmp_path: Path, pd: FakePagerDuty) -> None:
    env = env_for(tmp_path, pd, rules_dir(tmp_path), BRIDGE_PUBLIC_URL="https://bridge.example.com")
    bridge = BridgeProcess(tmp_path, env).start()
    try:
        key = post_alert(bridge, datadog_payload("pm-1", monitor="7008"))["alerts"][0]["dedup_key"]
        incident = wait_for(lambda: pd_incident(pd, key))
        wait_for(lambda: any("Role assignment" in n for n in notes(pd, incident.id)), timeout=20)
        post_alert(bridge, datadog_payload("pm-2", monitor="7008", transition="Recovered", value=0))
        draft = wait_for(lambda: (lambda r: r.text if "### Timeline Review" in r.text else None)(
            bridge.get(f"/api/v1/incidents/{key}/postmortem")), timeout=60)
        assert "### Impact Analysis" in draft and "27.4" in draft
        wait_for(lambda: any("Post-mortem draft ready" in n for n in notes(pd, incident.id)), timeout=60)
        [note] = [n for n in notes(pd, incident.id) if "Post-mortem draft ready" in n]
        assert "https://bridge.example.com/api/v1/incidents/" in note
    finally:
        bridge.kill()


def note_with(pd: FakePagerDuty, incident_id: str, text: str) -> str | None:
    return next((n for n in notes(pd, incident_id) if text in n), None)


def test_resolution_checklist_final_update_and_a_resolution_that_did_not_hold(tmp_path: Path,
                                                                             pd: FakePagerDuty) -> None:
    rules = rules_dir(tmp_path, settings="  final_update: status_update\n  reopen_within: 10m\n")
    env = env_for(tmp_path, pd, rules, BRIDGE_PUBLIC_URL="https://bridge.example.com")
    bridge = BridgeProcess(tmp_path, env).start()
    try:
        opened = post_alert(bridge, datadog_payload("loop-1", monitor="7010"))["alerts"][0]
        key = opened["dedup_key"]
        first = wait_for(lambda: pd_incident(pd, key))
        wait_for(lambda: note_with(pd, first.id, "Role assignment"), timeout=20)

        # Resolved: one note addresses each step of the process to the role holding it, and (opted in) the final
        # stakeholder update went out as a PagerDuty status update.
        post_alert(bridge, datadog_payload("loop-2", monitor="7010", transition="Recovered", value=0))
        note = wait_for(lambda: note_with(pd, first.id, "resolution checklist, by role"), timeout=30)
        for role, policy in (("Infrastructure Lead", "Platform Engineering"), ("Technical Lead", "Senior Developers"),
                             ("Communications Lead", "Product Managers"),
                             ("Incident Coordinator", "Engineering Managers")):
            assert f"- {role} (escalation policy '{policy}'): " in note
        assert "https://app.datadoghq.com/monitors/7010" in note  # the monitor that fired
        assert f"https://bridge.example.com/api/v1/incidents/{opened['incident_id']}/postmortem" in note
        [update] = pd.incident(first.id).status_updates
        assert update["message"].startswith("Resolved: ") and "Impact: 27.4% of users affected." in update["message"]
        assert f"(as sent):\n\n{update['message']}" in note

        # Flapping after the fix: the same bridge incident reopens; PagerDuty opens a new one, linked in a note.
        again = post_alert(bridge, datadog_payload("loop-3", monitor="7010"))["alerts"][0]
        assert (again["outcome"], again["incident_id"]) == ("reopened", opened["incident_id"])
        second = wait_for(lambda: (lambda i: i if i is not None and i.id != first.id else None)(pd_incident(pd, key)))
        reopen = wait_for(lambda: note_with(pd, second.id, "the resolution did not hold"), timeout=30)
        assert f"the previous one is {first.id}" in reopen
        wait_for(lambda: note_with(pd, second.id, "Role assignment"), timeout=20)  # the roles, again
        local = bridge.get(f"/api/v1/incidents/{opened['incident_id']}").json()
        assert local["status"] == "open" and local["details"]["reopens"][0]["pagerduty"]["id"] == first.id
        assert {"resolution_note", "final_update", "reopen"} <= {e["kind"] for e in local["timeline"]}

        # An account without status updates (402): the note carries the draft, with one warning.
        pd.abilities.discard("status_updates")
        other = post_alert(bridge, datadog_payload("loop-4", monitor="7011"))["alerts"][0]
        other_pd = wait_for(lambda: pd_incident(pd, other["dedup_key"]))
        wait_for(lambda: note_with(pd, other_pd.id, "Role assignment"), timeout=20)
        post_alert(bridge, datadog_payload("loop-5", monitor="7011", transition="Recovered", value=0))
        fallback = wait_for(lambda: note_with(pd, other_pd.id, "resolution checklist, by role"), timeout=30)
        assert "lacks the ability (HTTP 402)" in fallback and "Final stakeholder update (draft):" in fallback
        assert pd.incident(other_pd.id).status_updates == []
        timeline = bridge.get(f"/api/v1/incidents/{other['incident_id']}").json()["timeline"]
        warnings = [e for e in timeline if e["kind"] == "final_update" and e["description"].startswith("warning:")]
        assert len(warnings) == 1
        assert bridge.output().count("final stakeholder updates stay drafts") == 1
        assert len([r for r in pd.requests if r.path.endswith("/status_updates")]) == 2  # one sent, one 402
        assert not [j for j in bridge.get("/api/v1/jobs?limit=1000").json()["jobs"] if j["state"] == "dead"]
    finally:
        bridge.kill()


def test_notify_test_pages_a_role_and_resolves(tmp_path: Path, pd: FakePagerDuty) -> None:
    env = env_for(tmp_path, pd, rules_dir(tmp_path))
    done = subprocess.run([sys.executable, "-m", "bridge", "notify", "test", "--role", "InfoSec"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [created] = [i for i in pd.incidents if i.title.startswith("[TEST]")]
    assert "InfoSec" in created.title and created.escalation_policy_id == "PEPIS01"
    assert created.status == "resolved"
    bad = subprocess.run([sys.executable, "-m", "bridge", "notify", "test", "--role", "Janitor"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown role 'Janitor'" in bad.stderr and "Traceback" not in bad.stderr
    env_no_key = dict(env)
    env_no_key.pop("PAGERDUTY_API_TOKEN")
    nokey = subprocess.run([sys.executable, "-m", "bridge", "notify", "test", "--role", "InfoSec"], env=env_no_key,
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert nokey.returncode != 0 and "PAGERDUTY_API_TOKEN" in nokey.stderr
    wrong = dict(env, PAGERDUTY_SERVICE_ID="PNOSUCH")
    bad_target = subprocess.run([sys.executable, "-m", "bridge", "notify", "test", "--role", "InfoSec"],
                                env=wrong, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad_target.returncode != 0 and "route test for InfoSec failed" in bad_target.stderr
    assert API_KEY not in bad_target.stderr + bad_target.stdout


def test_secrets_never_reach_logs_or_error_messages(tmp_path: Path) -> None:
    routing_key = "Rsecretroutingkey0123456789abcde"  # 32 characters
    api_token = "u+SECRET-api-token-5f3a9c"
    webhook_token = "SECRET-webhook-token-77"
    admin_token = "SECRET-admin-token-88"
    azure_token = "SECRET-azure-token-99"
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES,
                       api_keys={api_token}) as pd:
        env = env_for(tmp_path, pd, rules_dir(tmp_path))
        env.update(PAGERDUTY_ROUTING_KEY=routing_key, PAGERDUTY_API_TOKEN=api_token,
                   BRIDGE_WEBHOOK_TOKEN=webhook_token, BRIDGE_ADMIN_TOKEN=admin_token,
                   BRIDGE_AZURE_TOKEN=azure_token)
        pd.fail(500, times=1, api="events")
        pd.fail(429, times=1, api="events")
        pd.drop(times=1, api="events")
        pd.fail(503, times=2, api="rest")
        pd.fail(400, times=1, api="events", path="/v2/enqueue")
        bridge = BridgeProcess(tmp_path, env).start()
        try:
            bodies = []
            for i, value in enumerate((30, 25)):
                r = bridge.post("/webhooks/datadog", json.dumps(datadog_payload(f"sec{i}", monitor=f"99{i}",
                                                                                value=value)),
                                token=webhook_token)
                bodies.append(r.text)
            r = bridge.post("/webhooks/datadog", "{}", token="wrong-token")
            bodies.append(r.text)
            # Each credential where it does not belong: refused, and neither is echoed.
            r = bridge.post("/webhooks/datadog", "{}", token=admin_token)
            assert r.status_code == 401
            bodies.append(r.text)
            r = bridge.get("/api/v1/alerts", token=webhook_token)
            assert r.status_code == 401
            bodies.append(r.text)
            r = bridge.post("/webhooks/azure?token=wrong", "{}", token=None)
            bodies.append(r.text)
            r = bridge.post("/api/v1/silences", json.dumps({"matchers": ["service=none"], "owner": "o",
                                                            "reason": "r", "duration": "1h"}), token=admin_token)
            assert r.status_code == 201
            bodies.append(r.text)
            wait_for(lambda: len([e for e in pd.events if e.event_action == "trigger"]) >= 1, timeout=30)
            wait_for(lambda: pd.requests_to("/incidents/", "POST"), timeout=30)
            time.sleep(2.0)
            api_text = "".join(bridge.get(p, token=admin_token).text for p in (
                "/api/v1/jobs?limit=1000", "/api/v1/alerts", "/api/v1/incidents", "/api/v1/audit",
                "/api/v1/rules", "/api/v1/silences", "/metrics"))
            everything = bridge.output() + "".join(bodies) + api_text
            for secret in (routing_key, api_token, webhook_token, admin_token, azure_token, api_token[-4:] + "'"):
                assert secret not in everything, f"a secret leaked: {secret[:6]}..."
            db = (tmp_path / "bridge.db").read_bytes()
            for secret in (routing_key, api_token, webhook_token, admin_token, azure_token):
                assert secret.encode() not in db
        finally:
            bridge.kill()
