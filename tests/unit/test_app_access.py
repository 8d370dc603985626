"""Who may post without a shared token, decided on the request's remote address (Flask test client: no network).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.app import create_app
from bridge.config import Secret, Settings

REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
BODY = json.dumps({"id": "a1", "alert_id": "1", "title": "t", "text": "bridge.value: 30",
                   "tags": "dimension:users_affected_pct"})


def app_with(tmp_path: Path, **receivers: dict[str, str]) -> object:
    base = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}",
                    receivers={"datadog": {"token": ""}, "azure": {"token": ""}, **receivers})
    return create_app(base)


@pytest.mark.parametrize(("environ", "status"), [(LOOPBACK, 202), (REMOTE, 401)], ids=["loopback", "remote"])
def test_without_a_webhook_token_only_loopback_may_post(tmp_path: Path, environ: dict[str, str],
                                                        status: int) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    r = client.post("/webhooks/datadog", data=BODY, environ_base=environ)
    assert r.status_code == status
    if status == 401:
        assert "BRIDGE_WEBHOOK_TOKEN" in r.get_json()["message"]


def test_azure_without_its_token_names_its_variable_to_a_remote_sender(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", webhook_token=Secret("shared"),
                        receivers={"datadog": {"token": "shared"}, "azure": {"token": ""}})
    client = create_app(settings).test_client()
    r = client.post("/webhooks/azure?token=whatever", data="{}", environ_base=REMOTE)
    assert r.status_code == 403
    assert "BRIDGE_AZURE_TOKEN" in r.get_json()["message"]
    assert "whatever" not in r.get_data(as_text=True)


def test_unknown_receiver_is_404_with_the_known_ones(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    r = client.post("/webhooks/nagios", data="{}", environ_base=LOOPBACK)
    assert r.status_code == 404 and "datadog" in r.get_json()["message"]


def test_our_own_failure_is_a_500_json_not_a_400(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    store = app.config["BRIDGE_STORE"]  # type: ignore[attr-defined]
    store.engine.dispose()
    # Break the database underneath the app: the sender must be told to retry (5xx), never to give up (4xx).
    (tmp_path / "b.db").unlink()
    (tmp_path / "b.db").mkdir()
    r = app.test_client().post("/webhooks/datadog", data=BODY, environ_base=LOOPBACK)  # type: ignore[attr-defined]
    assert r.status_code == 500
    assert r.get_json()["error"] == "internal"
