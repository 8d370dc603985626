"""The Google Cloud Pub/Sub push receiver: OIDC token checks and budget-notification parsing.

Tokens are signed here with a generated RSA key and a self-signed certificate (google-auth's signer), so no
test reaches Google.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt

from bridge.errors import AuthError, BadPayload, Forbidden
from bridge.model import CLOUD_COST_INCREASE_PCT, AlertState
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from bridge.receivers.gcp_pubsub import (
    GOOGLE_CERTS_URL,
    AudienceNotConfigured,
    GcpPubSubReceiver,
    GoogleCerts,
    GoogleCertsUnavailable,
    parse_budget_data,
)
from tests.support.shared import shared_json, shared_path

NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
URL = "https://bridge.example.com/webhooks/gcp-pubsub"
SA = "budget-push@my-project.iam.gserviceaccount.com"


class KeyPair:
    """An RSA key, its self-signed certificate (PEM) and a google-auth signer with a key id."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        self.signer = crypt.RSASigner.from_string(key_pem, key_id=kid)

    def token(self, **overrides: Any) -> str:
        claims = {"iss": "https://accounts.google.com", "aud": URL, "azp": "1234", "sub": "1234",
                  "email": SA, "email_verified": True,
                  "iat": int(NOW.timestamp()) - 10, "exp": int(NOW.timestamp()) + 3590}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return google_jwt.encode(self.signer, claims).decode("ascii")


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return KeyPair("kid-1")


@pytest.fixture(scope="module")
def other_keys() -> KeyPair:
    return KeyPair("kid-1")  # same kid, different key: a forged token


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"unexpected fetch of {url}")


def ctx(keys: KeyPair | None, *, now: datetime = NOW, fetch: Any = no_fetch, **settings: Any) -> ReceiverContext:
    base: dict[str, Any] = {"service_accounts": [SA], "audience": URL}
    if keys is not None:
        base["certs"] = {keys.kid: keys.cert_pem}
    base.update(settings)
    return ReceiverContext(now=now, settings=base, services={"fetch_url": fetch})


def push(body: dict[str, Any] | bytes, token: str | None = None, url: str = URL) -> InboundRequest:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest(body=raw, headers=Headers(headers), url=url)


def envelope(data: dict[str, Any] | bytes, *, message_id: str = "1001", budget_id: str = "budget-1",
             **attributes: str) -> dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"message": {"attributes": {"billingAccountId": "01D4EE-079462-DFD6EC", "budgetId": budget_id,
                                       "schemaVersion": "1.0", **attributes},
                        "data": base64.b64encode(raw).decode(), "messageId": message_id,
                        "publishTime": "2026-03-06T11:59:00Z"},
            "subscription": "projects/p/subscriptions/budgets"}


BUDGET = {"budgetDisplayName": "prod", "costAmount": 120.0, "costIntervalStart": "2026-03-01T08:00:00Z",
          "budgetAmount": 100.0, "budgetAmountType": "SPECIFIED_AMOUNT", "alertThresholdExceeded": 1.0,
          "currencyCode": "USD"}


# --- authentication ---------------------------------------------------------------------------------------------


def test_good_token(keys: KeyPair) -> None:
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()), ctx(keys))


def test_bare_issuer_accepted_and_custom_audience(keys: KeyPair) -> None:
    token = keys.token(iss="accounts.google.com", aud="my-custom-audience")
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), token), ctx(keys, audience="my-custom-audience"))


@pytest.mark.parametrize(("claims", "error", "match"), [
    pytest.param({"aud": "https://other.example.com/push"}, AuthError, "audience", id="wrong-audience"),
    pytest.param({"iss": "https://evil.example.com"}, AuthError, "issuer", id="wrong-issuer"),
    pytest.param({"iss": None}, AuthError, "issuer", id="no-issuer"),
    pytest.param({"exp": int(NOW.timestamp()) - 120, "iat": int(NOW.timestamp()) - 3720}, AuthError, "expired",
                 id="expired"),
    pytest.param({"exp": None}, AuthError, "exp", id="no-expiry"),
    # exp and iat are NumericDates (RFC 7519 §2): finite JSON numbers. Anything else could never expire.
    pytest.param({"exp": "inf"}, AuthError, "exp is not a number", id="exp-string-inf"),
    pytest.param({"exp": str(int(NOW.timestamp()) + 600)}, AuthError, "exp is not a number", id="exp-numeric-string"),
    pytest.param({"exp": float("inf")}, AuthError, "exp is not a finite", id="exp-Infinity"),
    pytest.param({"exp": float("nan")}, AuthError, "exp is not a finite", id="exp-NaN"),
    pytest.param({"exp": 10**400}, AuthError, "exp is not a finite", id="exp-beyond-float"),
    pytest.param({"exp": True}, AuthError, "exp is not a number", id="exp-bool"),
    pytest.param({"exp": [int(NOW.timestamp()) + 600]}, AuthError, "exp is not a number", id="exp-list"),
    pytest.param({"iat": None}, AuthError, "no iat", id="no-iat"),
    pytest.param({"iat": "-inf"}, AuthError, "iat is not a number", id="iat-string"),
    pytest.param({"iat": float("-inf")}, AuthError, "iat is not a finite", id="iat-minus-Infinity"),
    pytest.param({"iat": False}, AuthError, "iat is not a number", id="iat-bool"),
    pytest.param({"iat": int(NOW.timestamp()) + 600}, AuthError, "future", id="issued-in-future"),
    pytest.param({"email": "someone-else@evil.iam.gserviceaccount.com"}, Forbidden, "not in", id="unlisted-email"),
    pytest.param({"email": None}, Forbidden, "not in", id="no-email"),
    pytest.param({"email_verified": False}, Forbidden, "not verified", id="email-not-verified"),
    pytest.param({"email_verified": "true"}, Forbidden, "not verified", id="email-verified-as-string"),
])
def test_bad_claims(keys: KeyPair, claims: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token(**claims)), ctx(keys))


def test_expiry_allows_small_skew(keys: KeyPair) -> None:
    token = keys.token(exp=int(NOW.timestamp()) - 30)
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), token), ctx(keys))
    with pytest.raises(AuthError, match="expired"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), token), ctx(keys, clock_skew_seconds=0))


def test_bad_signature(keys: KeyPair, other_keys: KeyPair) -> None:
    with pytest.raises(AuthError, match="signature"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), other_keys.token()), ctx(keys))


def test_tampered_payload(keys: KeyPair) -> None:
    header, payload, signature = keys.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["email"] = "attacker@evil.iam.gserviceaccount.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(AuthError, match="signature"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), f"{header}.{forged}.{signature}"), ctx(keys))


def test_alg_none_and_garbage_rejected(keys: KeyPair) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"kid-1"}').decode().rstrip("=")
    body = keys.token().split(".")[1]
    for token in (f"{header}.{body}.", "not-a-jwt", "a.b.c"):
        with pytest.raises(AuthError):
            GcpPubSubReceiver().authenticate(push(envelope(BUDGET), token), ctx(keys))


def test_unknown_kid(keys: KeyPair) -> None:
    stranger = KeyPair("kid-unknown")
    with pytest.raises(AuthError, match="signing key"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), stranger.token()), ctx(keys))


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer "], ids=["none", "basic", "empty"])
def test_missing_bearer(keys: KeyPair, header: str | None) -> None:
    req = push(envelope(BUDGET))
    if header is not None:
        req = InboundRequest(body=req.body, headers=Headers({"Authorization": header}), url=URL)
    with pytest.raises(AuthError, match="Bearer"):
        GcpPubSubReceiver().authenticate(req, ctx(keys))


def test_no_service_accounts_configured_rejects(keys: KeyPair) -> None:
    with pytest.raises(Forbidden, match="BRIDGE_GCP_SERVICE_ACCOUNTS"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()), ctx(keys, service_accounts=[]))


def test_service_accounts_as_comma_string(keys: KeyPair) -> None:
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()),
                                     ctx(keys, service_accounts=f"other@x.iam.gserviceaccount.com, {SA}"))


@pytest.mark.parametrize("audience", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_without_configured_audience_every_request_is_503(keys: KeyPair, audience: str | None) -> None:
    # The token's audience is exactly the URL the request arrived on, which the old default took as the expected
    # audience (from the sender's own Host header). Now nothing is accepted until BRIDGE_GCP_AUDIENCE is set,
    # and nothing is fetched: `certs` is unset and the fetcher fails the test if called.
    settings: dict[str, Any] = {"service_accounts": [SA]} if audience is None else {"service_accounts": [SA],
                                                                                     "audience": audience}
    context = ReceiverContext(now=NOW, settings=settings, services={"fetch_url": no_fetch})
    for token in (keys.token(), None):
        with pytest.raises(AudienceNotConfigured) as err:
            GcpPubSubReceiver().authenticate(push(envelope(BUDGET), token, url=URL), context)
        assert err.value.status == 503 and err.value.code == "gcp_audience_not_configured"
        assert "BRIDGE_GCP_AUDIENCE" in err.value.message


def test_audience_is_never_taken_from_the_request_url(keys: KeyPair) -> None:
    # A token minted for another endpoint, sent with a Host/URL that matches it: still the configured audience.
    other = "https://other-service.example/push"
    with pytest.raises(AuthError, match="audience"):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token(aud=other), url=other), ctx(keys))


def test_certs_from_json_file(keys: KeyPair, tmp_path: Path) -> None:
    path = tmp_path / "certs.json"
    path.write_text(json.dumps({keys.kid: keys.cert_pem}))
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()), ctx(None, certs=str(path)))
    GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()), ctx(None, certs=path.read_text()))
    with pytest.raises(GoogleCertsUnavailable):
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()),
                                         ctx(None, certs=str(tmp_path / "missing.json")))


def test_google_certs_fetched_once_and_cached(keys: KeyPair) -> None:
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return json.dumps({keys.kid: keys.cert_pem}).encode()

    receiver = GcpPubSubReceiver(GoogleCerts())
    for seconds in (0, 1, 30):
        receiver.authenticate(push(envelope(BUDGET), keys.token()),
                              ctx(None, fetch=fetch, now=NOW + timedelta(seconds=seconds)))
    assert calls == [GOOGLE_CERTS_URL]
    # An hour later the keys are refreshed.
    later = NOW + timedelta(hours=1, minutes=1)
    token = keys.token(iat=int(later.timestamp()) - 5, exp=int(later.timestamp()) + 600)
    receiver.authenticate(push(envelope(BUDGET), token), ctx(None, fetch=fetch, now=later))
    assert len(calls) == 2


def test_google_certs_unavailable_is_not_a_4xx(keys: KeyPair) -> None:
    def fetch(url: str) -> bytes:
        raise OSError("no route")

    with pytest.raises(GoogleCertsUnavailable) as err:
        GcpPubSubReceiver().authenticate(push(envelope(BUDGET), keys.token()), ctx(None, fetch=fetch))
    assert err.value.status == 503 and err.value.code == "gcp_certs_unavailable"


# --- budget notifications ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "pct", "currency", "threshold_pct", "message_id"), [
    pytest.param("budget-push-envelope-assembled.json", "0.01", "USD", "100", "2070443601311540",
                 id="assembled-listen-sample-plus-0.01"),
    pytest.param("budget-push-envelope-the-slashinator-example.json", "1.00", "GBP", "100", "136969346945",
                 id="slashinator-gbp"),
])
def test_fixture_envelopes(name: str, pct: str, currency: str, threshold_pct: str, message_id: str) -> None:
    body = shared_path(f"fixtures/gcp-budget/{name}").read_bytes()
    [alert] = GcpPubSubReceiver().parse(push(body), ctx(None)).alerts
    data = json.loads(base64.b64decode(json.loads(body)["message"]["data"]))
    assert alert.source == "gcp-pubsub" and alert.state is AlertState.FIRING
    assert alert.categories == frozenset({"cloud_cost"})
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: float(pct)}
    assert alert.cost is not None and alert.cost.increase_pct == Decimal(pct)
    assert alert.cost.currency == currency and alert.fields["currency"] == currency
    assert alert.fields["threshold_pct"] == threshold_pct
    assert alert.fields["routine"] == "false" and alert.fields["forecast"] == "false"
    assert alert.fields["kind"] == "budget" and alert.fields["provider"] == "gcp"
    assert alert.fields["message_id"] == message_id
    budget_id = "de72f49d-779b-4945-a127-4d6ce8def0bb"
    assert alert.group_key == f"gcp-budget:{budget_id}:{data['costIntervalStart']}"
    assert alert.source_event_id == f"{budget_id}:{data['costIntervalStart']}:actual:1"
    assert alert.fields["account"] == "01D4EE-079462-DFD6EC"
    assert alert.links and "01D4EE-079462-DFD6EC" in alert.links[0].href


@pytest.mark.parametrize(("name", "pct", "threshold_pct", "forecast_pct"), [
    pytest.param("budget-data-listen-to-notifications-sample.json", "0.01", "100", None, id="listen-plus-0.01"),
    pytest.param("budget-data-notification-format-sample.json", "-8.02", "90", "20", id="format-minus-8.0"),
])
def test_documented_data_samples(name: str, pct: str, threshold_pct: str, forecast_pct: str | None) -> None:
    data = json.loads(shared_path(f"fixtures/gcp-budget/{name}").read_bytes())
    [alert] = GcpPubSubReceiver().parse(push(envelope(data)), ctx(None)).alerts
    # Negative is kept: a 90 % threshold crossed under budget (cloud-cost.md §7 pitfall 3).
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: float(pct)}
    assert alert.fields["threshold_pct"] == threshold_pct
    assert alert.fields.get("forecast_threshold_pct") == forecast_pct
    assert alert.fields["forecast"] == "false"  # an actual threshold takes precedence over a forecast one


def test_generic_pubsub_message_is_not_a_budget() -> None:
    body = shared_path("fixtures/gcp-budget/pubsub-push-envelope-documented.json").read_bytes()
    with pytest.raises(BadPayload, match="not valid JSON"):
        GcpPubSubReceiver().parse(push(body), ctx(None))


def test_routine_report_is_recorded_without_dimension() -> None:
    data = {k: v for k, v in BUDGET.items() if k != "alertThresholdExceeded"}
    [alert] = GcpPubSubReceiver().parse(push(envelope(data, message_id="555")), ctx(None)).alerts
    assert alert.fields["routine"] == "true"
    assert alert.dimensions == {}
    assert "threshold_pct" not in alert.fields
    assert alert.source_event_id == "555"  # each routine report is its own event; redeliveries dedupe
    assert alert.group_key == "gcp-budget:budget-1:2026-03-01T08:00:00Z"
    assert "routine" in alert.title


def test_forecast_threshold_only() -> None:
    data = {k: v for k, v in BUDGET.items() if k != "alertThresholdExceeded"}
    data.update(costAmount=80.0, forecastThresholdExceeded=1.2)
    [alert] = GcpPubSubReceiver().parse(push(envelope(data)), ctx(None)).alerts
    assert alert.fields["forecast"] == "true" and alert.cost is not None and alert.cost.forecast
    assert alert.fields["threshold_pct"] == "120" and alert.fields["threshold_kind"] == "forecast"
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: -20.0}
    assert alert.source_event_id == "budget-1:2026-03-01T08:00:00Z:forecast:1.2"


def test_repeated_threshold_is_a_duplicate_and_higher_threshold_updates_the_incident() -> None:
    receiver = GcpPubSubReceiver()
    first = receiver.parse(push(envelope(dict(BUDGET, alertThresholdExceeded=0.9, costAmount=95.0),
                                         message_id="1")), ctx(None)).alerts[0]
    repeat = receiver.parse(push(envelope(dict(BUDGET, alertThresholdExceeded=0.9, costAmount=97.5),
                                          message_id="2")), ctx(None)).alerts[0]
    higher = receiver.parse(push(envelope(dict(BUDGET, alertThresholdExceeded=1.0, costAmount=101.0),
                                          message_id="3")), ctx(None)).alerts[0]
    next_period = receiver.parse(push(envelope(dict(BUDGET, costIntervalStart="2026-04-01T07:00:00Z"),
                                               message_id="4")), ctx(None)).alerts[0]
    assert first.source_event_id == repeat.source_event_id != higher.source_event_id
    assert first.group_key == repeat.group_key == higher.group_key != next_period.group_key


def test_zero_budget_is_new_spend() -> None:
    [alert] = GcpPubSubReceiver().parse(push(envelope(dict(BUDGET, budgetAmount=0))), ctx(None)).alerts
    assert alert.cost is not None and alert.cost.new_spend and alert.cost.increase_pct is None
    assert alert.dimensions == {} and alert.fields["new_spend"] == "true"


def test_snake_case_message_id_and_missing_budget_id() -> None:
    env = envelope(BUDGET)
    env["message"]["message_id"] = env["message"].pop("messageId")
    del env["message"]["attributes"]["budgetId"]
    [alert] = GcpPubSubReceiver().parse(push(env), ctx(None)).alerts
    assert alert.fields["message_id"] == "1001"
    assert alert.group_key == "gcp-budget:01D4EE-079462-DFD6EC/prod:2026-03-01T08:00:00Z"


def test_non_budget_json_is_kept_as_unrecognized() -> None:
    [alert] = GcpPubSubReceiver().parse(push(envelope({"anomaly": {"id": "x"}})), ctx(None)).alerts
    assert alert.fields["parse_status"] == "unrecognized" and alert.dimensions == {}
    assert alert.source_event_id == "1001"


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"message": "x"}', b'{"message": {"data": "@@@"}}', b'{"message": {}}',
    json.dumps(envelope(b"[1, 2]")).encode(),
    json.dumps(envelope({"costAmount": "lots", "budgetAmount": 1})).encode(),
], ids=["not-json", "list", "message-not-object", "data-not-base64", "no-data", "data-not-object",
        "amount-not-number"])
def test_bad_bodies(body: bytes) -> None:
    with pytest.raises(BadPayload):
        GcpPubSubReceiver().parse(push(body), ctx(None))


def test_parse_budget_data_is_pure() -> None:
    facts = parse_budget_data(shared_json("fixtures/gcp-budget/budget-data-notification-format-sample.json"))
    assert facts.cost == Decimal("140.321") and facts.budget == Decimal("152.557")
    assert facts.alert_threshold == Decimal("0.9") and facts.forecast_threshold == Decimal("0.2")
    assert facts.increase_pct == Decimal("-8.02") and not facts.routine
