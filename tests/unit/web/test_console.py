"""The web console through the real app (Flask test client): sign-in with the admin token only, the cookie's
flags, CSRF on every form, nothing but the sign-in page without a session, every page, audited writes, error
pages without traces; and the pure parts (the chart's buckets, the silence form, the stylesheet's contrast)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import Secret, Settings
from bridge.errors import BadPayload
from bridge.pipeline.stage import PipelineStage
from bridge.web import create_app
from bridge.web.console import render_markdown, web_url
from bridge.web.console.auth import SignInLimiter, session_key
from bridge.web.console.chart import COLOURS, draw, hourly
from bridge.web.console.forms import silence_body, split_matchers
from bridge.web.console.palette import CONTRAST_PAIRS, contrast_ratio
from tests.support.shared import REPO

ADMIN = "admin-token-for-operators"
WEBHOOK = "webhook-token-for-senders"
EXAMPLES = REPO / "webhooks" / "datadog" / "examples"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_app(tmp_path: Path, admin: str = ADMIN, **extra: Any) -> Flask:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret(admin),
                        webhook_token=Secret(WEBHOOK), receivers={"datadog": {"token": Secret(WEBHOOK)}},
                        rules_path=str(REPO / "rules"), **extra)
    return create_app(settings)


def csrf_of(client: FlaskClient, path: str = "/ui/") -> str:
    found = CSRF.search(client.get(path, environ_base=LOOPBACK).get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, token: str = ADMIN) -> Any:
    return client.post("/ui/sign-in", data={"token": token, "csrf_token": csrf_of(client)}, environ_base=LOOPBACK)


@pytest.fixture()
def app(tmp_path: Path) -> Flask:
    app = make_app(tmp_path)
    client = app.test_client()
    for example in ("01-checkout-users-triggered.json", "04-payments-api-no-data.json"):
        r = client.post("/webhooks/datadog", data=(EXAMPLES / example).read_bytes(), environ_base=LOOPBACK,
                        content_type="application/json", headers={"Authorization": f"Bearer {WEBHOOK}"})
        assert r.status_code == 202, r.get_data(as_text=True)
    holder = app.config["BRIDGE_HOLDER"]
    PipelineStage(app.config["BRIDGE_STORE"], lambda: holder.current).drain()
    return app


def audit_actions(app: Flask) -> list[str]:
    return [a["action"] for a in app.config["BRIDGE_STORE"].list_audit(limit=100)]


# -- sign-in, cookie, CSRF -------------------------------------------------------------------------------------

def test_root_redirects_to_the_console_and_pages_need_a_session(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/", environ_base=LOOPBACK).headers["Location"] == "/ui/"
    page = client.get("/ui/", environ_base=LOOPBACK)
    assert page.status_code == 200 and 'name="token"' in page.get_data(as_text=True)
    for path in ("/ui/alerts", "/ui/alerts/1", "/ui/incidents", "/ui/incidents/1", "/ui/delivery",
                 "/ui/silences", "/ui/rules", "/ui/overview"):
        r = client.get(path, environ_base=LOOPBACK)
        assert r.status_code == 302 and r.headers["Location"].startswith("/ui/?next="), path
    # A POST without a session is refused (with its CSRF token: the check after CSRF is the session's).
    r = client.post("/ui/silences/1/expire", data={"csrf_token": csrf_of(client)}, environ_base=LOOPBACK)
    assert r.status_code == 401 and "not signed in" in r.get_data(as_text=True)


def test_the_admin_token_signs_in_the_webhook_token_never(app: Flask) -> None:
    client = app.test_client()
    wrong = sign_in(client, WEBHOOK)
    assert wrong.status_code == 401 and "webhook token is not accepted" in wrong.get_data(as_text=True)
    assert client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 302
    ok = sign_in(client)
    assert ok.status_code == 302 and ok.headers["Location"] == "/ui/overview"
    assert client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 200
    assert audit_actions(app)[:2] == ["console.sign_in", "console.sign_in_failed"]
    # No secret reaches the audit log.
    assert ADMIN not in str(app.config["BRIDGE_STORE"].list_audit()) and WEBHOOK not in str(
        app.config["BRIDGE_STORE"].list_audit())


@pytest.mark.parametrize("base_url, secure", [("http://127.0.0.1", False), ("https://127.0.0.1", True)],
                         ids=["http", "https"])
def test_the_session_cookie_flags(app: Flask, base_url: str, secure: bool) -> None:
    client = app.test_client()
    token = CSRF.search(client.get("/ui/", base_url=base_url, environ_base=LOOPBACK).get_data(as_text=True))
    assert token
    r = client.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": token.group(1)}, base_url=base_url,
                    environ_base=LOOPBACK, headers={"Referer": f"{base_url}/ui/"})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("bridge_console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie and "Expires=" in cookie
    assert ("Secure" in cookie.split(";")[1:] or "; Secure" in cookie) is secure


def test_the_cookie_is_secure_when_configured(tmp_path: Path) -> None:
    client = make_app(tmp_path, console_secure_cookie=True).test_client()
    assert "; Secure" in sign_in(client).headers["Set-Cookie"]


def test_every_form_needs_its_csrf_token(app: Flask) -> None:
    client = app.test_client()
    no_token = client.post("/ui/sign-in", data={"token": ADMIN}, environ_base=LOOPBACK)
    assert no_token.status_code == 400 and "CSRF" in no_token.get_data(as_text=True)
    assert sign_in(client).status_code == 302
    for path, data in [("/ui/silences", {"matchers": "service=x", "owner": "a", "reason": "b", "ends_at": "+1h"}),
                       ("/ui/silences/1/expire", {}), ("/ui/delivery/1/retry", {}), ("/ui/delivery/1/discard", {}),
                       ("/ui/rules/playground", {"source": "datadog", "payload": "{}"}), ("/ui/sign-out", {})]:
        for token in (None, "forged"):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            r = client.post(path, data=body, environ_base=LOOPBACK)
            assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True), (path, token)
            assert "Traceback" not in r.get_data(as_text=True)
    assert app.config["BRIDGE_STORE"].list_silences(include_expired=True) == []


def test_replicas_accept_each_others_cookies_and_a_rotated_token_signs_everyone_out(app: Flask,
                                                                                   tmp_path: Path) -> None:
    client = app.test_client()
    sign_in(client)
    cookie = client.get_cookie("bridge_console", path="/ui")
    assert cookie is not None
    replica = make_app(tmp_path).test_client()
    replica.set_cookie("bridge_console", cookie.value, path="/ui")
    assert replica.get("/ui/alerts", environ_base=LOOPBACK).status_code == 200
    rotated = make_app(tmp_path, admin="a-new-admin-token").test_client()
    rotated.set_cookie("bridge_console", cookie.value, path="/ui")
    assert rotated.get("/ui/alerts", environ_base=LOOPBACK).status_code == 302
    assert session_key(ADMIN) != session_key("a-new-admin-token")


def test_a_session_ends_after_its_lifetime(tmp_path: Path) -> None:
    clock = [datetime(2026, 12, 6, 9, 0, tzinfo=UTC)]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret(ADMIN),
                        rules_path=str(REPO / "rules"), console_session_seconds=3600.0)
    client = create_app(settings, clock=lambda: clock[0]).test_client()
    assert sign_in(client).status_code == 302
    clock[0] = datetime(2026, 12, 6, 9, 59, tzinfo=UTC)
    assert client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 200
    clock[0] = datetime(2026, 12, 6, 10, 1, tzinfo=UTC)
    assert client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 302


def test_pages_forbid_scripts_frames_and_caching(app: Flask) -> None:
    client = signed_in_client(app)
    r = client.get("/ui/alerts", environ_base=LOOPBACK)
    assert "default-src 'none'" in r.headers["Content-Security-Policy"] and "script-src" not in r.headers[
        "Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
    unknown = client.get("/ui/no-such-page", environ_base=LOOPBACK)
    assert unknown.status_code == 404 and "no console page" in unknown.get_data(as_text=True)
    css = client.get("/ui/static/console/console.css", environ_base=LOOPBACK)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")


def test_sign_out_ends_the_session_and_is_audited(app: Flask) -> None:
    client = app.test_client()
    sign_in(client)
    r = client.post("/ui/sign-out", data={"csrf_token": csrf_of(client, "/ui/alerts")}, environ_base=LOOPBACK)
    assert r.status_code == 302
    assert client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 302
    assert audit_actions(app)[0] == "console.sign_out"


def test_failed_sign_ins_are_limited_per_address(app: Flask) -> None:
    client = app.test_client()
    answers = [sign_in(client, "guess").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    # The right token is refused too while limited, and the refusals are not audited (no flood).
    assert sign_in(client).status_code == 429
    assert audit_actions(app).count("console.sign_in_failed") == 5


@pytest.mark.parametrize("failures_at, now, wait", [
    ([], 100.0, 0.0),
    ([10.0, 20.0, 30.0], 40.0, 0.0),
    ([10.0, 20.0, 30.0, 40.0, 50.0], 55.0, 15.0),
    ([10.0, 20.0, 30.0, 40.0, 50.0], 70.5, 0.0),
], ids=["none", "under-limit", "limited", "oldest-left-window"])
def test_sign_in_limiter(failures_at: list[float], now: float, wait: float) -> None:
    clock = iter(failures_at + [now])
    limiter = SignInLimiter(clock=lambda: next(clock))
    for _ in failures_at:
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(wait)


def test_a_next_target_outside_the_console_is_ignored(app: Flask) -> None:
    client = app.test_client()
    r = client.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": csrf_of(client),
                                         "next": "//evil.example/ui/"}, environ_base=LOOPBACK)
    assert r.headers["Location"] == "/ui/overview"
    client = app.test_client()
    r = client.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": csrf_of(client),
                                         "next": "/ui/alerts?source=datadog"}, environ_base=LOOPBACK)
    assert r.headers["Location"] == "/ui/alerts?source=datadog"


def test_without_an_admin_token_nobody_signs_in(tmp_path: Path) -> None:
    client = make_app(tmp_path, admin="").test_client()
    assert "The console is off" in client.get("/ui/", environ_base=LOOPBACK).get_data(as_text=True)
    r = sign_in(client, "")
    assert r.status_code == 401 and client.get("/ui/alerts", environ_base=LOOPBACK).status_code == 302


# -- pages ---------------------------------------------------------------------------------------------------------

def signed_in_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def text(client: FlaskClient, path: str, status: int = 200) -> str:
    r = client.get(path, environ_base=LOOPBACK)
    assert r.status_code == status, (path, r.get_data(as_text=True)[:500])
    body = r.get_data(as_text=True)
    assert "Traceback" not in body
    return body


def test_alerts_filter_and_page(app: Flask) -> None:
    client = signed_in_client(app)
    both = text(client, "/ui/alerts")
    assert both.index("/ui/alerts/2") < both.index("/ui/alerts/1")  # newest first
    paged = text(client, "/ui/alerts?action=page")
    assert "/ui/alerts/1" in paged and "/ui/alerts/2" not in paged
    assert "No alerts match" in text(client, "/ui/alerts?source=azure")
    assert "Older alerts" not in both and "2 alerts, newest first" in both
    first = text(client, "/ui/alerts?limit=1&source=datadog")
    older = re.search(r'<a rel="next" href="([^"]+)">Older alerts', first)
    assert older and "/ui/alerts/2" in first and "/ui/alerts/1" not in first
    second = text(client, older.group(1).replace("&amp;", "&"))
    assert "/ui/alerts/1" in second and "/ui/alerts/2" not in second and "Older alerts" not in second
    bad = text(client, "/ui/alerts?severity=P9&source=datadog", status=400)
    assert "severity &#39;P9&#39; is not one of" in bad and 'value="datadog"' in bad  # the filters stay
    assert "cursor is not one this API gave" in text(client, "/ui/alerts?cursor=abc", status=400)


def test_alert_detail_shows_the_decision_the_alert_the_raw_payload_and_its_incident(app: Flask) -> None:
    client = signed_in_client(app)
    page = text(client, "/ui/alerts/1")
    assert "datadog-monitor" in page and "Raw payload" in page and "Normalized alert" in page
    assert "/ui/incidents/1" in page
    not_paged = text(client, "/ui/alerts/2")
    assert "Why not paged" in not_paged and "not paged: recorded only" in not_paged
    missing = text(client, "/ui/alerts/99", status=404)
    assert "no alert 99" in missing


def test_incidents_and_an_incident(app: Flask) -> None:
    client = signed_in_client(app)
    listing = text(client, "/ui/incidents")
    assert "/ui/incidents/1" in listing and "P0" in listing
    assert "/ui/incidents/1" in text(client, "/ui/incidents?status=open")
    assert "/ui/incidents/1" not in text(client, "/ui/incidents?status=resolved")
    page = text(client, "/ui/incidents/1")
    assert "<dt>Priority</dt><dd>P1</dd>" in page  # P0 is declared: PagerDuty's default name P1
    assert "Timeline" in page and "Post-mortem draft" in page and "<h1>" in page.split("Post-mortem draft")[1]
    assert "status &#39;bogus&#39; is not one of" in text(client, "/ui/incidents?status=bogus", status=400)


def test_silence_preview_create_bad_input_and_expire(app: Flask) -> None:
    client = signed_in_client(app)
    token = csrf_of(client, "/ui/silences")
    form = {"csrf_token": token, "matchers": "service=checkout", "owner": "alice", "reason": "drill",
            "ends_at": "+2h"}
    preview = client.post("/ui/silences", data={**form, "do": "preview"}, environ_base=LOOPBACK)
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Would have matched 1 of the last day" in body
    bad = client.post("/ui/silences", data={**form, "matchers": "no operator here", "do": "create"},
                      environ_base=LOOPBACK)
    assert bad.status_code == 400 and 'class="error"' in bad.get_data(as_text=True)
    assert "no operator here" in bad.get_data(as_text=True)  # the form keeps what was typed
    created = client.post("/ui/silences", data={**form, "do": "create"}, environ_base=LOOPBACK)
    assert created.status_code == 302
    listing = text(client, "/ui/silences")
    assert "Silence 1 created." in listing and "service=checkout" in listing
    expired = client.post("/ui/silences/1/expire", data={"csrf_token": token}, environ_base=LOOPBACK)
    assert expired.status_code == 302 and "Silence 1 expired." in text(client, "/ui/silences")
    assert audit_actions(app)[:2] == ["silence.expire", "silence.create"]
    assert app.config["BRIDGE_STORE"].list_audit(limit=1)[0]["actor"] == "console from 127.0.0.1"
    missing = client.post("/ui/silences/99/expire", data={"csrf_token": token}, environ_base=LOOPBACK)
    assert missing.status_code == 404 and "no silence 99" in missing.get_data(as_text=True)


def test_delivery_retry_and_discard_are_audited(app: Flask) -> None:
    store = app.config["BRIDGE_STORE"]
    job = store.list_jobs(state="pending")[0]
    store.job_failed(job["id"], datetime.now(UTC).timestamp(), error="400 Bad Request: invalid routing key",
                     reason="bad_request", retry_at=None)
    client = signed_in_client(app)
    page = text(client, "/ui/delivery")
    assert "invalid routing key" in page and "events per minute" in page and f"Retry job {job['id']}" in page
    token = csrf_of(client, "/ui/delivery")
    r = client.post(f"/ui/delivery/{job['id']}/retry", data={"csrf_token": token}, environ_base=LOOPBACK)
    assert r.status_code == 302 and store.get_job(job["id"])["state"] == "pending"
    again = client.post(f"/ui/delivery/{job['id']}/retry", data={"csrf_token": token}, environ_base=LOOPBACK)
    assert again.status_code == 302 and "not dead" in text(client, "/ui/delivery")
    r = client.post(f"/ui/delivery/{job['id']}/discard", data={"csrf_token": token}, environ_base=LOOPBACK)
    assert store.get_job(job["id"])["state"] == "discarded"
    assert audit_actions(app)[:2] == ["job.discard", "job.retry"]


def test_rules_page_and_playground(app: Flask) -> None:
    client = signed_in_client(app)
    holder = app.config["BRIDGE_HOLDER"]
    page = text(client, "/ui/rules")
    assert holder.current.hash in page and "Playground" in page and 'id="heartbeats"' in page
    token = csrf_of(client, "/ui/rules")
    payload = (EXAMPLES / "01-checkout-users-triggered.json").read_text()
    r = client.post("/ui/rules/playground", data={"csrf_token": token, "source": "datadog", "payload": payload},
                    environ_base=LOOPBACK)
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "decision: page" in body and "rules considered:" in body
    bad = client.post("/ui/rules/playground", data={"csrf_token": token, "source": "datadog", "payload": "{nope"},
                      environ_base=LOOPBACK)
    assert bad.status_code == 400 and "The payload was refused" in bad.get_data(as_text=True)
    unknown = client.post("/ui/rules/playground", data={"csrf_token": token, "source": "x", "payload": "{}"},
                          environ_base=LOOPBACK)
    assert unknown.status_code == 400 and "Unknown source" in unknown.get_data(as_text=True)


def test_overview_chart(app: Flask) -> None:
    client = signed_in_client(app)
    page = text(client, "/ui/overview")
    assert "<svg" in page and "<title id=\"chart-title\">" in page and "<table>" in page
    assert "2 alerts, 1 pages" in page


# -- pure parts ----------------------------------------------------------------------------------------------------

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
H = 3600.0


@pytest.mark.parametrize("rows, hour_index, alerts, pages", [
    ([(NOW.timestamp(), "P1", "page")], 23, {"P1": 1}, 1),
    ([(NOW.timestamp() - H, "P3", "record"), (NOW.timestamp() - H, None, "record")], 22, {"P3": 1, "none": 1}, 0),
    ([(NOW.timestamp() - 23 * H - 1800, "P0", "page")], 0, {"P0": 1}, 1),
    ([(NOW.timestamp() - 24 * H - 1800, "P0", "page")], None, {}, 0),  # before the window: dropped
], ids=["this-hour", "an-hour-ago", "first-hour", "too-old"])
def test_hourly_buckets(rows: list[Any], hour_index: int | None, alerts: dict[str, int], pages: int) -> None:
    hours = hourly(rows, NOW)
    assert len(hours) == 24 and hours[-1].start == datetime(2026, 12, 6, 10, tzinfo=UTC)
    if hour_index is None:
        assert sum(h.total for h in hours) == 0
        return
    hour = hours[hour_index]
    assert {k: v for k, v in hour.alerts.items() if v} == alerts and hour.pages == pages


def test_draw_scales_and_stacks() -> None:
    chart = draw(hourly([(NOW.timestamp(), "P0", "page")] * 3 + [(NOW.timestamp(), "P2", "record")], NOW))
    assert chart.y_max == 4 and chart.total_alerts == 4 and chart.total_pages == 3
    assert [(b.severity, b.count) for b in chart.bars] == [("P0", 3), ("P2", 1)]
    p0, p2 = chart.bars
    assert p2.y + p2.height == pytest.approx(p0.y, abs=0.2)  # stacked


@pytest.mark.parametrize("form, body", [
    ({"matchers": "service=checkout\n tag:env=prod ", "owner": "a", "reason": "r", "ends_at": "+2h"},
     {"matchers": ["service=checkout", "tag:env=prod"], "owner": "a", "reason": "r", "ends_at": "+2h"}),
    ({"matchers": "service=a, severity=P2", "owner": "a", "reason": "r", "ends_at": "2026-12-06T18:00"},
     {"matchers": ["service=a", "severity=P2"], "owner": "a", "reason": "r", "ends_at": "2026-12-06T18:00"}),
], ids=["lines", "commas"])
def test_silence_body(form: dict[str, str], body: dict[str, Any]) -> None:
    assert silence_body(form) == body


@pytest.mark.parametrize("missing", ["matchers", "owner", "reason", "ends_at"])
def test_silence_body_names_the_empty_field(missing: str) -> None:
    form = {"matchers": "service=a", "owner": "a", "reason": "r", "ends_at": "+1h", missing: "  "}
    with pytest.raises(BadPayload, match="is required"):
        silence_body(form)


def test_a_regex_line_stays_whole() -> None:
    assert split_matchers("title=~a,b{1,2}\nservice=x") == ["title=~a,b{1,2}", "service=x"]


@pytest.mark.parametrize("foreground, background, what, least", CONTRAST_PAIRS, ids=[p[2] for p in CONTRAST_PAIRS])
def test_stylesheet_contrast(foreground: str, background: str, what: str, least: float) -> None:
    css = (REPO / "bridge/web/console/static/console/console.css").read_text().lower()
    assert foreground in css and background in css, f"{what}: the pair is not the stylesheet's any more"
    assert contrast_ratio(foreground, background) >= least


@pytest.mark.parametrize("severity", list(COLOURS))
def test_chart_colours_stand_out(severity: str) -> None:
    assert contrast_ratio(COLOURS[severity], "#ffffff") >= 3.0  # WCAG 1.4.11, graphical objects
    css = (REPO / "bridge/web/console/static/console/console.css").read_text()
    assert f".bar-{severity}, .swatch-{severity} {{ fill: {COLOURS[severity]}; background: {COLOURS[severity]}; }}" \
        in css


@pytest.mark.parametrize("markdown, present, absent", [
    ("# Title\n\n<script>alert(1)</script>", ["<h1>Title</h1>", "&lt;script&gt;"], ["<script>"]),
    ("[x](javascript:alert(1))", [], ['href="javascript:']),
    ("| a | b |\n|---|---|\n| 1 | 2 |", ["<table>"], []),
], ids=["raw-html-escaped", "javascript-link-dropped", "tables"])
def test_postmortem_markdown_is_rendered_safely(markdown: str, present: list[str], absent: list[str]) -> None:
    html = str(render_markdown(markdown))
    assert all(p in html for p in present) and not any(a in html for a in absent), html


@pytest.mark.parametrize("value, shown", [("https://x.pagerduty.com/incidents/1", "https://x.pagerduty.com/incidents/1"),
                                          ("javascript:alert(1)", ""), (None, ""), ("HTTP://a", "HTTP://a")])
def test_only_web_links_are_linked(value: Any, shown: str) -> None:
    assert web_url(value) == shown
