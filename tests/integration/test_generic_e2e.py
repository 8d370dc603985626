"""Any JSON webhook through the real server: the shipped Grafana and Statuspage sources, their own tokens, and
sources re-read on a rules reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = REPO / "webhooks" / "generic" / "examples"
GRAFANA_TOKEN = "grafana-token-3d5f"


def test_grafana_and_statuspage_sources_page_with_their_own_tokens(tmp_path: Path, rules_copy: Path) -> None:
    rules = rules_copy
    with FakePagerDuty(tls=False) as pd:
        env = bridge_env(tmp_path, BRIDGE_RULES=str(rules), PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                         PAGERDUTY_EVENTS_URL=pd.url, BRIDGE_GRAFANA_TOKEN=GRAFANA_TOKEN)
        bridge = BridgeProcess(tmp_path, env).start()
        try:
            firing = (EXAMPLES / "grafana-firing.json").read_bytes()
            r = bridge.post("/webhooks/generic/grafana", firing, token=GRAFANA_TOKEN)
            assert r.status_code == 202, r.text
            alerts = r.json()["alerts"]
            assert len(alerts) == len(json.loads(firing)["alerts"])  # one alert per entry of alerts[]
            paged = [a for a in alerts if a["action"] == "page"]
            assert paged, alerts
            wait_for(lambda: all(pd.triggers_for(a["dedup_key"]) for a in paged))
            resolved = bridge.post("/webhooks/generic/grafana", (EXAMPLES / "grafana-resolved.json").read_bytes(),
                                   token=GRAFANA_TOKEN)
            assert resolved.status_code == 202, resolved.text
            assert any(a["action"] == "resolve" and a["dedup_key"] in {p["dedup_key"] for p in paged}
                       for a in resolved.json()["alerts"])
            wrong = bridge.post("/webhooks/generic/grafana", firing, token="not-the-grafana-token")
            assert wrong.status_code == 401 and "not-the-grafana-token" not in wrong.text
            # A source without a configured token is never open, even from loopback.
            status = bridge.post("/webhooks/generic/statuspage",
                                 (EXAMPLES / "statuspage-incident-investigating.json").read_bytes(), token=None)
            assert status.status_code == 401
            assert bridge.post("/webhooks/generic/nagios", b"{}").status_code == 404
            # A new source appears with a rules reload.
            (rules / "sources" / "second.yaml").write_text((rules / "sources" / "grafana.yaml").read_text()
                                                          .replace("name: grafana", "name: second"))
            assert bridge.post("/-/reload", b"").status_code == 200
            deadline = time.monotonic() + 5
            answer = bridge.post("/webhooks/generic/second", firing, token=GRAFANA_TOKEN)
            while answer.status_code == 404 and time.monotonic() < deadline:
                time.sleep(0.3)
                answer = bridge.post("/webhooks/generic/second", firing, token=GRAFANA_TOKEN)
            assert answer.status_code == 202, answer.text
            assert GRAFANA_TOKEN not in bridge.output()
            pd.assert_no_invalid_requests()
        finally:
            bridge.kill()
