"""Every route of the app refuses a caller without its credential: parametrized over the Flask app's `url_map`, so
a route added later (the console under /ui/, /api/v1/heartbeats) is covered without editing this file, and a route
that answers a stranger fails `test_every_route_is_guarded_or_allow_listed` until it is guarded or allow-listed.

Through the real app (Flask test client), from a remote address, with every credential configured:
- each admin route (API, reload, console) refuses: no credential, a wrong, truncated, extended or differently-cased
  admin token, the webhook token (as a Bearer token and as a basic-auth password), an empty Bearer, the admin token in
  the query string; and changes nothing (no silence, no audit entry, no job touched);
- each webhook refuses the same wrong tokens of its own kind, the admin token, another receiver's token; and stores
  nothing;
- SNS: a missing signature, another message's signature, a message changed after signing, a re-signed message with
  an old timestamp, and certificate URLs over http, on other hosts, with path tricks and on amazonaws look-alikes
  (none of them fetched);
- Pub/Sub: tokens with the wrong audience, issuer, service account, expiry (a token reused after it expired),
  `alg: none`, HS256 keyed with the public certificate, another key's signature.

"Replayed" per scheme: the shared tokens (webhook, admin, Azure, generic) are static secrets: a replayed token is
the token, and TLS is what keeps it secret; a replayed *request* is answered as a duplicate and stores nothing new
(its source event id is in the journal already). SNS: a captured message re-sent later is refused once its signed
`Timestamp` is older than `max_age_seconds` (default 3600 s); within that window it is a duplicate (same
MessageId). Pub/Sub: a captured token is refused after its `exp` (Google's last an hour; 60 s of skew allowed),
and a re-pushed message within it is a duplicate (same messageId).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from bridge.config import Secret, Settings
from bridge.store import alerts
from bridge.store.schema import audit, jobs, silences
from bridge.web import create_app
from tests.support.bodies import DATADOG, alertmanager_body
from tests.support.cost_signing import GoogleSigner, SnsSigner, pubsub_push, sns_headers, sns_timestamp
from tests.support.shared import REPO, shared_json

REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
WEBHOOK = "Webhook-Token-For-Route-Tests-0123"
ADMIN = "Admin-Token-For-Route-Tests-4567"
AZURE = "Azure-Token-For-Route-Tests-89ab"
GENERIC = {"BRIDGE_GRAFANA_TOKEN": "Grafana-Token-For-Route-Tests-cdef",
           "BRIDGE_STATUSPAGE_TOKEN": "Statuspage-Token-For-Route-Tests-0f0f"}
TOPIC = "arn:aws:sns:us-east-1:123456789012:cost-alerts"
AUDIENCE = "https://bridge.example.com/webhooks/gcp-pubsub"
SERVICE_ACCOUNT = "budget-push@example-project.iam.gserviceaccount.com"
SECRETS = (WEBHOOK, ADMIN, AZURE, *GENERIC.values())

# Routes that answer without a credential by design. A new route is either guarded (refuses a stranger) or named
# here; the console's sign-in page and its static files are public so that a browser can sign in.
PUBLIC_ROUTES = frozenset({
    "/healthz", "/readyz", "/metrics",            # probes and Prometheus (no alert content)
    "/api/v1/openapi.json",                       # the published contract
    "/static/<path:filename>",                    # Flask's static files (none shipped)
    "/", "/ui/", "/ui/sign-in", "/ui/static/<path:filename>",  # the console's sign-in page, its form, assets
})
# The console's other pages take a session cookie (signed in at /ui/), never a header token: a caller without one
# is sent to the sign-in page (GET) or refused (POST: the CSRF check, or the sign-in check behind it).
SIGN_IN_PAGE = "/ui"
WEBHOOK_RULE = "/webhooks/<path:name>"


def _settings(tmp: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp / 'auth.db'}", rules_path=str(REPO / "rules"),
        webhook_token=Secret(WEBHOOK), admin_token=Secret(ADMIN),
        receivers={
            "datadog": {"token": Secret(WEBHOOK)}, "alertmanager": {"token": Secret(WEBHOOK)},
            "azure": {"token": Secret(AZURE)},
            "aws-sns": {"topic_allowlist": [TOPIC], "cert_dir": str(tmp / "sns-certs"), "auto_confirm": False},
            "gcp-pubsub": {"audience": AUDIENCE, "service_accounts": [SERVICE_ACCOUNT],
                           "certs": str(tmp / "google-certs.json")},
        })


def _route_cases() -> tuple[list[tuple[str, str, str]], list[str]]:
    """(method, rule, URL) of every non-webhook route, and the path of every webhook receiver, read from an app
    built as `serve` builds it (the generic sources included)."""
    saved = {name: os.environ.get(name) for name in GENERIC}
    os.environ.update(GENERIC)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app(_settings(Path(tmp)))
            routes = []
            for rule in app.url_map.iter_rules():
                if rule.rule == WEBHOOK_RULE:
                    continue
                url = rule.rule
                for arg in rule.arguments:
                    url = url.replace(f"<int:{arg}>", "1").replace(f"<path:{arg}>", "datadog-1").replace(
                        f"<{arg}>", "x")
                for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                    routes.append((method, rule.rule, url))
            web = app.extensions["incident-bridge"]
            receivers = sorted(web.registry.current(web.holder))
            app.config["BRIDGE_STORE"].engine.dispose()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return routes, receivers


ROUTES, RECEIVERS = _route_cases()
GUARDED = [r for r in ROUTES if r[1] not in PUBLIC_ROUTES]


class Bridge:
    """The app with every credential configured, its SNS and Google signers, and what it stored."""

    def __init__(self, tmp: Path) -> None:
        self.sns = SnsSigner(tmp / "sns-certs")
        self.google = GoogleSigner()
        self.google.write_certs(tmp / "google-certs.json")
        self.fetched: list[str] = []

        def fetch(url: str) -> bytes:  # no certificate is ever fetched: they are all in cert_dir
            self.fetched.append(url)
            raise OSError("the tests fetch nothing")

        self.app: Flask = create_app(_settings(tmp), services={"fetch_url": fetch})
        self.store = self.app.config["BRIDGE_STORE"]
        self.client = self.app.test_client()

    def counts(self) -> tuple[int, ...]:
        """Rows of the tables a request could change, and the jobs' states."""
        with self.store.engine.connect() as conn:
            counts = [int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                      for t in (alerts, silences, audit, jobs)]
            states = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.state != "pending")).scalar_one()
        return (*counts, int(states))


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    saved = {name: os.environ.get(name) for name in GENERIC}
    os.environ.update(GENERIC)
    made = Bridge(tmp_path_factory.mktemp("auth"))
    yield made
    made.store.engine.dispose()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def basic(password: str, user: str = "bridge") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(r: Any, statuses: tuple[int, ...] = (401, 403)) -> None:
    """Refused with a JSON error that names no secret (neither plain nor as basic auth carries it)."""
    assert r.status_code in statuses, (r.status_code, r.get_data(as_text=True)[:300])
    text = r.get_data(as_text=True) + json.dumps(dict(r.headers))
    for secret in SECRETS:
        assert secret not in text and base64.b64encode(secret.encode()).decode()[:16] not in text
    if r.mimetype == "application/json":
        assert {"error", "message"} <= set(r.get_json())


# -- every route: guarded, or public by design ------------------------------------------------------------------

def test_the_app_has_the_routes_this_module_knows_of() -> None:
    rules = {rule for _, rule, _ in ROUTES}
    assert {"/api/v1/alerts", "/api/v1/silences", "/-/reload", "/healthz"} <= rules
    assert {"datadog", "alertmanager", "aws-sns", "gcp-pubsub", "azure", "generic/grafana"} <= set(RECEIVERS)


def open_to_strangers(client: Any, method: str, rule: str, url: str) -> str | None:
    """Why `rule` fails the guard check (a stranger got in), or None: a stranger (remote, no credential) is
    refused on every route not in PUBLIC_ROUTES; a console page may send a browser to its sign-in page instead."""
    r = client.open(url, method=method, data="{}", content_type="application/json", environ_base=REMOTE)
    if rule in PUBLIC_ROUTES:
        return None if r.status_code != 500 else f"public {method} {rule} answered 500"
    if r.status_code in (302, 303) and rule.startswith("/ui/"):
        target = r.headers.get("Location", "").split("?")[0].rstrip("/")
        return None if target.endswith(SIGN_IN_PAGE) else f"{rule} redirects to {target!r}"
    if r.status_code == 400 and rule.startswith("/ui/") and method == "POST" and "CSRF" in r.get_data(as_text=True):
        return None
    if r.status_code in (401, 403):
        return None
    return (f"{method} {rule} answered {r.status_code} to a caller without credentials: guard it, or add it to "
            "PUBLIC_ROUTES if it is public by design")


@pytest.mark.parametrize(("method", "rule", "url"), ROUTES, ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_every_route_is_guarded_or_allow_listed(bridge: Bridge, method: str, rule: str, url: str) -> None:
    assert open_to_strangers(bridge.client, method, rule, url) is None


def test_a_new_route_that_nobody_guarded_is_caught(tmp_path: Path) -> None:
    """The check itself: a route added without a guard (here under /debug/) fails it; under /api/v1/ the
    app's guard covers it already."""
    app = create_app(_settings(tmp_path))
    app.add_url_rule("/debug/state", "debug_state", lambda: {"secret": "state"})
    app.add_url_rule("/api/v1/heartbeats-new", "heartbeats_new", lambda: {"beats": []})
    client = app.test_client()
    assert "answered 200" in (open_to_strangers(client, "GET", "/debug/state", "/debug/state") or "")
    assert open_to_strangers(client, "GET", "/api/v1/heartbeats-new", "/api/v1/heartbeats-new") is None
    app.config["BRIDGE_STORE"].engine.dispose()


# -- admin routes: only the admin token -------------------------------------------------------------------------

WRONG_ADMIN: list[tuple[str, dict[str, str], str]] = [
    ("missing", {}, ""),
    ("wrong", bearer("not-the-admin-token"), ""),
    ("truncated", bearer(ADMIN[:-1]), ""),
    ("extended", bearer(ADMIN + "0"), ""),
    ("differently-cased", bearer(ADMIN.swapcase()), ""),
    ("upper-cased", bearer(ADMIN.upper()), ""),
    ("webhook-token", bearer(WEBHOOK), ""),
    ("webhook-token-basic", basic(WEBHOOK), ""),
    ("azure-token", bearer(AZURE), ""),
    ("empty-bearer", {"Authorization": "Bearer "}, ""),
    ("scheme-only", {"Authorization": "Bearer"}, ""),
    ("token-without-scheme", {"Authorization": ADMIN}, ""),
    ("in-query-string", {}, f"?token={ADMIN}"),
    ("x-bridge-token-header", {"X-Bridge-Token": ADMIN}, ""),
]


@pytest.mark.parametrize(("method", "rule", "url"), GUARDED, ids=[f"{m} {r}" for m, r, _ in GUARDED])
@pytest.mark.parametrize(("case", "headers", "query"), WRONG_ADMIN, ids=[c[0] for c in WRONG_ADMIN])
def test_admin_routes_refuse_every_other_credential(bridge: Bridge, method: str, rule: str, url: str, case: str,
                                                    headers: dict[str, str], query: str) -> None:
    before = bridge.counts()
    body = json.dumps({"matchers": ["service=checkout"], "owner": "ops", "reason": "r", "duration": "1h"})
    r = bridge.client.open(url + query, method=method, data=body, content_type="application/json",
                           headers=headers, environ_base=REMOTE)
    if r.status_code in (302, 303) and rule.startswith("/ui/"):  # the console sends a browser to sign in
        assert r.headers["Location"].split("?")[0].rstrip("/").endswith(SIGN_IN_PAGE)
        assert bridge.counts() == before
        return
    if rule.startswith("/ui/") and method == "POST":  # a form without a session's CSRF token
        assert_refused(r, (400,))
        assert "CSRF" in r.get_data(as_text=True)
    else:
        assert_refused(r)
    assert bridge.counts() == before


@pytest.mark.parametrize(("method", "rule", "url"), GUARDED, ids=[f"{m} {r}" for m, r, _ in GUARDED])
def test_admin_routes_take_the_admin_token(bridge: Bridge, method: str, rule: str, url: str) -> None:
    """The control: the admin token gets past the guard on each of them (so the refusals above are the guard's)."""
    r = bridge.client.open(url, method=method, data="{}", content_type="application/json", headers=bearer(ADMIN),
                           environ_base=REMOTE)
    assert r.status_code not in (401, 403), (r.status_code, r.get_data(as_text=True)[:300])


# -- webhooks with shared tokens: only their own -----------------------------------------------------------------

def _good(name: str) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, query) that `name` accepts: a valid body with the right credential."""
    json_type = {"Content-Type": "application/json"}
    if name in ("datadog", "alertmanager"):
        body = DATADOG if name == "datadog" else alertmanager_body({})
        return json.dumps(body).encode(), {**json_type, **bearer(WEBHOOK)}, ""
    if name == "azure":
        body = shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json")
        return json.dumps(body).encode(), json_type, f"?token={AZURE}"
    source = name.split("/", 1)[1]
    example = sorted((REPO / "webhooks/generic/examples").glob(f"{source}-*.json"))[0]
    return example.read_bytes(), {**json_type, **bearer(GENERIC[f"BRIDGE_{source.upper()}_TOKEN"])}, ""


def _token_of(name: str) -> str:
    if name in ("datadog", "alertmanager"):
        return WEBHOOK
    if name == "azure":
        return AZURE
    return GENERIC[f"BRIDGE_{name.split('/', 1)[1].upper()}_TOKEN"]


TOKEN_RECEIVERS = [n for n in RECEIVERS if n not in ("aws-sns", "gcp-pubsub")]
WRONG_TOKEN = ["missing", "wrong", "truncated", "extended", "differently-cased", "admin-token",
               "another-receivers-token", "empty-bearer", "basic-with-wrong-password"]


def _wrong(case: str, name: str) -> tuple[dict[str, str], str]:
    """Headers and query presenting `case` instead of `name`'s token, wherever that receiver looks for one."""
    own = _token_of(name)
    other = AZURE if own != AZURE else WEBHOOK
    token = {"wrong": "not-the-token", "truncated": own[:-1], "extended": own + "0",
             "differently-cased": own.swapcase(), "admin-token": ADMIN, "another-receivers-token": other}.get(case)
    if case == "missing":
        return {}, ""
    if case == "empty-bearer":
        return {"Authorization": "Bearer "}, ""
    if case == "basic-with-wrong-password":
        return basic("nope", user=own), ""  # the token as the user name: only the password counts
    assert token is not None
    return (bearer(token), "") if name != "azure" else ({}, f"?token={token}")


@pytest.mark.parametrize("name", TOKEN_RECEIVERS)
@pytest.mark.parametrize("case", WRONG_TOKEN)
def test_token_webhooks_refuse_every_other_credential(bridge: Bridge, name: str, case: str) -> None:
    body, headers, _ = _good(name)
    headers = {k: v for k, v in headers.items() if k != "Authorization"}
    extra, query = _wrong(case, name)
    before = bridge.counts()
    r = bridge.client.post(f"/webhooks/{name}{query}", data=body, headers={**headers, **extra}, environ_base=REMOTE)
    assert_refused(r)
    assert bridge.counts() == before


@pytest.mark.parametrize("name", TOKEN_RECEIVERS)
def test_token_webhooks_take_their_token_and_a_replayed_request_is_a_duplicate(bridge: Bridge, name: str) -> None:
    body, headers, query = _good(name)
    first = bridge.client.post(f"/webhooks/{name}{query}", data=body, headers=headers, environ_base=REMOTE)
    assert first.status_code in (200, 202), first.get_data(as_text=True)
    stored = bridge.counts()
    again = bridge.client.post(f"/webhooks/{name}{query}", data=body, headers=headers, environ_base=REMOTE)
    # 200, not 202: every alert of the body is a duplicate, and no row was added.
    assert again.status_code == 200, again.get_data(as_text=True)
    assert bridge.counts() == stored


# -- SNS: signatures and certificate URLs ---------------------------------------------------------------------

def _post_sns(bridge: Bridge, envelope: dict[str, Any]) -> Any:
    return bridge.client.post("/webhooks/aws-sns", data=json.dumps(envelope), headers=sns_headers(envelope),
                              environ_base=REMOTE)


def test_sns_signed_message_is_accepted_and_its_replay_is_a_duplicate(bridge: Bridge) -> None:
    envelope = bridge.sns.notification("AWS Budget Notification: control", topic=TOPIC)
    assert _post_sns(bridge, envelope).status_code == 202
    stored = bridge.counts()[0]
    again = _post_sns(bridge, envelope)
    assert again.status_code == 200 and bridge.counts()[0] == stored


def _resigned(bridge: Bridge, envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    unsigned = {k: v for k, v in envelope.items() if k not in ("Signature", "SignatureVersion", "SigningCertURL")}
    return bridge.sns.sign({**unsigned, **changes})


SNS_FORGERIES = {
    "no-signature": lambda b, e: {k: v for k, v in e.items() if k != "Signature"},
    "empty-signature": lambda b, e: {**e, "Signature": ""},
    "another-messages-signature": lambda b, e: {
        **e, "Signature": b.sns.notification("another message", topic=TOPIC)["Signature"]},
    "changed-after-signing": lambda b, e: {**e, "Message": e["Message"] + " and more"},
    "topic-changed-after-signing": lambda b, e: {**e, "TopicArn": TOPIC.replace("cost-alerts", "other")},
    "replayed-two-hours-later": lambda b, e: _resigned(
        b, e, Timestamp=sns_timestamp(datetime.now(UTC) - timedelta(hours=2))),
    "timestamp-in-the-future": lambda b, e: _resigned(
        b, e, Timestamp=sns_timestamp(datetime.now(UTC) + timedelta(hours=2))),
    "sigv1-downgrade-with-v2-signature": lambda b, e: {**e, "SignatureVersion": "1"},
    "unlisted-topic": lambda b, e: _resigned(b, e, TopicArn="arn:aws:sns:us-east-1:999999999999:other"),
}


@pytest.mark.parametrize("forgery", sorted(SNS_FORGERIES))
def test_sns_forged_or_replayed_messages_are_refused(bridge: Bridge, forgery: str) -> None:
    envelope = bridge.sns.notification(f"AWS Budget Notification: {forgery}", topic=TOPIC)
    before = bridge.counts()
    assert_refused(_post_sns(bridge, SNS_FORGERIES[forgery](bridge, envelope)))
    assert bridge.counts() == before


BAD_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/{file}",                          # not https
    "https://sns.us-east-1.amazonaws.com.evil.example/{file}",            # a suffix of ours
    "https://sns.us-east-1.amazonaws.com@evil.example/{file}",            # userinfo
    "https://evil.example/sns.us-east-1.amazonaws.com/{file}",            # the host in the path
    "https://sns.us-east-1.amazonaws.co/{file}",                          # look-alike TLD
    "https://sns.us-east-1.amazonaws.com.cn.evil.example/{file}",
    "https://sns-us-east-1.amazonaws.com/{file}",                         # dash for dot
    "https://s3.amazonaws.com/attacker-bucket/{file}",                    # another AWS service
    "https://sns.us-east-1.amazonaws.com:8443/{file}",                    # a port
    "https://sns.us-east-1.amazonaws.com/../../evil.example/{file}",      # path traversal
    "https://sns.us-east-1.amazonaws.com/%2e%2e/{file}",
    "https://sns.us-east-1.amazonaws.com/dir/{file}",                     # not at the root
    "https://sns.us-east-1.amazonaws.com/{file}#fragment",
    "https://sns.us-east-1.amazonaws.com/{file}?x=1",
    "https://sns.us-east-1.amazonaws.com/evil.pem",                       # not an SNS certificate name
    "https://sns.us-east-1.amazonaws.com\\@evil.example/{file}",
    "https://xn--sns-9ja.us-east-1.amazonaws.com/{file}",                 # punycode look-alike
]


@pytest.mark.parametrize("url", BAD_CERT_URLS)
def test_sns_certificate_urls_off_the_sns_hosts_are_refused_unfetched(bridge: Bridge, url: str) -> None:
    file_name = bridge.sns.cert_url.rsplit("/", 1)[1]
    envelope = bridge.sns.notification("AWS Budget Notification: cert", topic=TOPIC)
    envelope["SigningCertURL"] = url.format(file=file_name)
    before = bridge.counts()
    fetched = len(bridge.fetched)
    assert_refused(_post_sns(bridge, envelope))
    assert bridge.counts() == before and len(bridge.fetched) == fetched


# -- Pub/Sub: the push token ------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()),
                     _b64url(signature)])


def _claims() -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": SERVICE_ACCOUNT, "email_verified": True,
            "iat": now - 5, "exp": now + 3600}


def _hs256_with_certificate(bridge: Bridge) -> str:
    import hashlib
    import hmac

    header = {"alg": "HS256", "kid": bridge.google.kid, "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(_claims()).encode())}"
    mac = hmac.new(bridge.google.cert_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


NOW_S = int(datetime.now(UTC).timestamp())
PUBSUB_TOKENS = {
    "wrong-audience": lambda b: b.google.token(audience="https://other.example.com/push", email=SERVICE_ACCOUNT),
    "audience-of-another-path": lambda b: b.google.token(audience=AUDIENCE + "/x", email=SERVICE_ACCOUNT),
    "wrong-issuer": lambda b: b.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT, iss="https://evil.example"),
    "wrong-service-account": lambda b: b.google.token(audience=AUDIENCE, email="x@evil.iam.gserviceaccount.com"),
    "email-not-verified": lambda b: b.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT, email_verified=False),
    "reused-after-expiry": lambda b: b.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT, iat=NOW_S - 7200,
                                                    exp=NOW_S - 3600),
    "issued-in-the-future": lambda b: b.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT, iat=NOW_S + 3600,
                                                     exp=NOW_S + 7200, nbf=NOW_S + 3600),
    "alg-none": lambda b: _unsigned({"alg": "none", "typ": "JWT"}, _claims()),
    "alg-none-with-kid": lambda b: _unsigned({"alg": "none", "kid": b.google.kid}, _claims(), b"sig"),
    "hs256-keyed-with-the-certificate": _hs256_with_certificate,
    "another-keys-signature": lambda b: GoogleSigner(kid=b.google.kid).token(audience=AUDIENCE,
                                                                            email=SERVICE_ACCOUNT),
    "unknown-kid": lambda b: GoogleSigner(kid="other-kid").token(audience=AUDIENCE, email=SERVICE_ACCOUNT),
    "truncated": lambda b: b.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT)[:-2],
    "not-a-jwt": lambda b: "not-a-jwt",
    "the-webhook-token": lambda b: WEBHOOK,
}


def _push(bridge: Bridge, authorization: dict[str, str], message_id: str) -> Any:
    body = pubsub_push({"budgetDisplayName": "b", "costAmount": 120, "budgetAmount": 100,
                        "alertThresholdExceeded": 1.0, "currencyCode": "USD", "costIntervalStart":
                        "2026-03-01T00:00:00Z", "budgetAmountType": "SPECIFIED_AMOUNT"},
                       message_id=message_id, budget_id="b-route")
    return bridge.client.post("/webhooks/gcp-pubsub", data=json.dumps(body),
                              headers={"Content-Type": "application/json", **authorization}, environ_base=REMOTE)


def test_pubsub_good_token_is_accepted_and_a_repeated_push_is_a_duplicate(bridge: Bridge) -> None:
    token = bridge.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT)
    assert _push(bridge, bearer(token), "route-ok").status_code == 202
    stored = bridge.counts()[0]
    assert _push(bridge, bearer(token), "route-ok").status_code == 200 and bridge.counts()[0] == stored


@pytest.mark.parametrize("case", sorted(PUBSUB_TOKENS))
def test_pubsub_tokens_that_are_not_googles_for_us_are_refused(bridge: Bridge, case: str) -> None:
    before = bridge.counts()
    assert_refused(_push(bridge, bearer(PUBSUB_TOKENS[case](bridge)), f"route-{case}"))
    assert _push(bridge, {}, f"route-{case}-missing").status_code == 401
    assert bridge.counts() == before


CONSOLE_FORMS = [r for r in GUARDED if r[1].startswith("/ui/") and r[0] == "POST"]


@pytest.mark.parametrize(("method", "rule", "url"), CONSOLE_FORMS, ids=[f"{m} {r}" for m, r, _ in CONSOLE_FORMS])
def test_console_forms_refuse_a_stranger_with_a_valid_csrf_token(bridge: Bridge, method: str, rule: str,
                                                                 url: str) -> None:
    """A stranger who loaded the sign-in page has a session and a CSRF token of their own, but never signed in:
    every console form still refuses them (sends them to sign in) and changes nothing."""
    import re

    client = bridge.client.application.test_client()
    page = client.get("/ui/", environ_base=REMOTE).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the sign-in page carries a CSRF token"
    before = bridge.counts()
    r = client.open(url, method=method, environ_base=REMOTE, headers=bearer(ADMIN),
                    data={"csrf_token": found.group(1), "matchers": "service=checkout", "owner": "x",
                          "reason": "y", "ends": "+1h", "source": "datadog", "payload": "{}"})
    assert r.status_code in (302, 303, 401, 403), (r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code in (302, 303):
        assert r.headers["Location"].split("?")[0].rstrip("/").endswith(SIGN_IN_PAGE)
    assert bridge.counts() == before
