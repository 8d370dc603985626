"""Hostile bodies, generated and mutated from the real fixtures: every receiver answers alerts or a 4xx, never a
5xx, and a refused body leaves no half-stored alert.

Two levels: each receiver's `parse()` (pure: it returns `Parsed` or raises a `RequestError`, nothing else), and the
real app through its test client, with each sender's real authentication (signed SNS messages, signed Pub/Sub
tokens, the Azure and generic sources' tokens), so the hostile part reaches the parser. The same text on
PostgreSQL is in tests/integration/test_hostile_bodies_postgres.py.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import Secret, Settings
from bridge.errors import AuthError, BadPayload, RequestError
from bridge.receivers import build_receivers
from bridge.receivers.alertmanager import AlertmanagerReceiver
from bridge.receivers.aws_sns import AwsSnsReceiver
from bridge.receivers.azure import AzureReceiver
from bridge.receivers.base import Headers, InboundRequest, Parsed, ReceiverContext
from bridge.receivers.datadog import DatadogReceiver
from bridge.receivers.gcp_pubsub import GcpPubSubReceiver
from bridge.receivers.generic import GenericReceiver, parse_generic_source
from bridge.receivers.jsonbody import MAX_DEPTH, load_json, without_surrogates
from bridge.store import alerts
from bridge.web import create_app
from tests.support.bodies import DATADOG, alertmanager_body
from tests.support.cost_signing import GoogleSigner, SnsSigner, pubsub_push
from tests.support.hostile import NASTY_TEXT, body_bytes, examples
from tests.support.shared import REPO, shared_json, shared_path, shared_text

NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:cost-alerts"
AUDIENCE = "https://bridge.example.com/webhooks/gcp-pubsub"
SERVICE_ACCOUNT = "budget-push@example-project.iam.gserviceaccount.com"
AZURE_TOKEN = "azure-token-for-hostile-tests"
GRAFANA_TOKEN = "grafana-token-for-hostile-tests"
WEBHOOK_TOKEN = "webhook-token-for-hostile-tests"

# -- the loader, as a table ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "result"), [
    (b'{"id": "\\udcff"}', {"id": "\ufffd"}),
    (b'{"id": "\\ud83d\\ude00"}', {"id": "\U0001f600"}),          # a valid pair stays one character
    (b'{"\\udcff": 1}', {"\ufffd": 1}),
    (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
    (b'{"a": 1e308}', {"a": 1e308}),
    (b'{"a": 123456789012345678901234567890}', {"a": 123456789012345678901234567890}),
    (b'[' * MAX_DEPTH + b']' * MAX_DEPTH, "ok"),
    (b'{"id": "a\\u0000b"}', {"id": "a\ufffdb"}),                  # PostgreSQL text cannot hold U+0000
    (b'{"id": "a\\\\u0000b"}', {"id": "a\\u0000b"}),               # an escaped backslash, then text: kept
    (b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH, "ok"),
    (json.dumps({"a": "[{" * 500}).encode(), {"a": "[{" * 500}),  # brackets in strings do not nest
], ids=["lone-surrogate", "pair", "surrogate-key", "bom", "large-float", "large-int", "max-depth", "nul",
        "escaped-backslash-u0000", "max-depth-objects", "brackets-in-strings"])
def test_loader_accepts(data: bytes, result: Any) -> None:
    loaded = load_json(data)
    if result != "ok":
        assert loaded == result


@pytest.mark.parametrize(("data", "needle"), [
    (b'{"a": NaN}', "NaN and Infinity are refused"),
    (b'{"a": Infinity}', "NaN and Infinity are refused"),
    (b'{"a": -Infinity}', "NaN and Infinity are refused"),
    (b'{"a": 1e999}', "overflows to infinity"),
    (b'{"a": ' + b"1" * 101 + b"}", "longer than 100"),
    (b'{"a": ' + b"1" * 5000 + b"}", "longer than 100"),
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b'[' * (MAX_DEPTH + 1) + b']' * (MAX_DEPTH + 1), "deeper than 64"),
    (b'[' * 100_000 + b']' * 100_000, "deeper than 64"),
    (b'{"a": "\xff"}', "not valid UTF-8 (byte 7: 0xff)"),
    (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),              # a surrogate encoded in UTF-8 (CESU)
    (b'{"a": 1', "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"\\udcff": 1, "\\udcfe": 2}', "appears twice"),   # one key once both are U+FFFD: which value counts?
    (b'{"\\u0000": 1, "\\ufffd": 2}', "appears twice"),
    (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "deeper than 64"),
], ids=["nan", "infinity", "minus-infinity", "overflow", "101-digits", "5000-digits", "duplicate-key",
        "depth-65", "depth-100000", "invalid-utf8", "cesu", "truncated", "empty", "keys-equal-after-replacement",
        "nul-key-and-replacement-key", "depth-65-objects"])
def test_loader_refuses(data: bytes, needle: str) -> None:
    with pytest.raises(BadPayload) as err:
        load_json(data)
    assert (err.value.status, err.value.code) == (400, "bad_payload") and needle in err.value.message


# -- each receiver's parse, pure -------------------------------------------------------------------------------

def _datadog_fixture() -> dict[str, Any]:
    line = shared_path("fixtures/datadog/keep-raw-alerts.jsonl").read_text(encoding="utf-8").splitlines()[0]
    return dict(json.loads(line))


def _receiver_settings(tmp: Path) -> dict[str, dict[str, Any]]:
    return {
        "datadog": {"token": Secret("")},
        "alertmanager": {"token": Secret("")},
        "aws-sns": {"topic_allowlist": [TOPIC], "max_age_seconds": 10**9, "cert_dir": str(tmp),
                    "auto_confirm": False},
        "gcp-pubsub": {"audience": AUDIENCE, "service_accounts": [SERVICE_ACCOUNT], "certs": ""},
        "azure": {"token": Secret(AZURE_TOKEN)},
    }


PARSE = settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_never_crashes(receiver_name: str, body: bytes, headers: dict[str, str] | None = None,
                         tmp: Path | None = None) -> None:
    receivers = build_receivers(Settings(receivers=_receiver_settings(tmp or Path("/nonexistent"))),
                                REPO / "rules")
    request = InboundRequest(body=body, headers=Headers(headers or {"Content-Type": "application/json"}),
                             url=AUDIENCE)
    ctx = ReceiverContext(now=NOW, settings=_receiver_settings(tmp or Path("/nonexistent"))
                          .get(receiver_name.split("/")[0], {}))
    try:
        parsed = receivers[receiver_name].parse(request, ctx)
    except RequestError as exc:
        assert 400 <= exc.status < 500, exc
        return
    assert isinstance(parsed, Parsed)
    for alert in parsed.alerts:
        text = json.dumps(alert.to_dict(), allow_nan=False)
        text.encode("utf-8")  # no lone surrogate survives


@given(data=st.data())
@PARSE
def test_datadog_parse_never_crashes(data: st.DataObject) -> None:
    _parse_never_crashes("datadog", data.draw(body_bytes(_datadog_fixture())))


GENERIC_EXAMPLES = {"generic/grafana": ["grafana-firing.json", "grafana-resolved.json"],
                    "generic/statuspage": ["statuspage-component-update.json",
                                           "statuspage-incident-investigating.json",
                                           "statuspage-incident-resolved.json"]}


@given(data=st.data())
@PARSE
def test_generic_parse_never_crashes(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(sorted(GENERIC_EXAMPLES)))
    name = data.draw(st.sampled_from(GENERIC_EXAMPLES[source]))
    example = json.loads((REPO / "webhooks/generic/examples" / name).read_text(encoding="utf-8"))
    _parse_never_crashes(source, data.draw(body_bytes(example)))


@given(data=st.data())
@PARSE
def test_alertmanager_parse_never_crashes(data: st.DataObject) -> None:
    original = shared_json("fixtures/alertmanager/webhook-v4-example.assembled.json")
    _parse_never_crashes("alertmanager", data.draw(body_bytes(original)))


AZURE_FIXTURES = ["aip-budget-notification-test-action.json", "aip-budget-notification-tutorial.json",
                  "common-schema-costalerts-actual.json", "common-schema-costalerts-forecasted.json"]


@given(data=st.data())
@PARSE
def test_azure_parse_never_crashes(data: st.DataObject) -> None:
    original = shared_json(f"fixtures/azure-budget/{data.draw(st.sampled_from(AZURE_FIXTURES))}")
    _parse_never_crashes("azure", data.draw(body_bytes(original)))


GCP_FIXTURES = ["budget-data-listen-to-notifications-sample.json", "budget-data-notification-format-sample.json"]


@given(data=st.data())
@PARSE
def test_gcp_parse_never_crashes(data: st.DataObject) -> None:
    budget = shared_json(f"fixtures/gcp-budget/{data.draw(st.sampled_from(GCP_FIXTURES))}")
    inner = data.draw(body_bytes(budget))
    envelope = pubsub_push({}, message_id=str(data.draw(st.integers(0, 10**6))), budget_id="b-1")
    envelope["message"]["data"] = base64.b64encode(inner).decode("ascii")
    outer = data.draw(st.sampled_from(["wrapped", "mutated-envelope"]))
    body = json.dumps(envelope).encode() if outer == "wrapped" else data.draw(body_bytes(envelope))
    _parse_never_crashes("gcp-pubsub", body)


CAD_FIXTURES = ["cad-sns-message-documented-2021-no-percentage.json", "cad-sns-message-documented-current.json",
                "cad-sns-message-root-cause-service-only.json"]
BUDGET_TEXTS = ["budgets-actual-daily-2023-03-05.txt", "budgets-actual-monthly-2019-10-28.txt",
                "budgets-forecasted-monthly-2026-01-28.txt"]


@st.composite
def sns_messages(draw: st.DrawFn) -> str:
    """A Cost Anomaly Detection message mutated as JSON, or an AWS Budgets text with hostile words spliced in."""
    if draw(st.booleans()):
        cad = shared_json(f"fixtures/aws-cost-anomaly/{draw(st.sampled_from(CAD_FIXTURES))}")
        return draw(body_bytes(cad)).decode("utf-8", "replace")
    text = shared_text(f"fixtures/aws-budgets/{draw(st.sampled_from(BUDGET_TEXTS))}")
    words = text.split(" ")
    at = draw(st.integers(0, len(words) - 1))
    words[at] = draw(st.sampled_from(NASTY_TEXT))
    return " ".join(words)


@given(data=st.data())
@PARSE
def test_sns_parse_never_crashes(data: st.DataObject) -> None:
    envelope = dict(shared_json("fixtures/aws-sns/notification-sigv2-no-subject-2026-03-06-us-west-2.json"))
    envelope["Message"] = data.draw(sns_messages())
    body = json.dumps(envelope).encode() if data.draw(st.booleans()) else data.draw(body_bytes(envelope))
    _parse_never_crashes("aws-sns", body, {"Content-Type": "text/plain; charset=UTF-8"})


# -- the real app, authenticated as each sender ----------------------------------------------------------------

class Bridge:
    """One app for the whole module, with every sender's credentials, and a count of stored alerts."""

    def __init__(self, tmp: Path) -> None:
        self.sns = SnsSigner(tmp / "sns-certs")
        self.google = GoogleSigner()
        certs = self.google.write_certs(tmp / "google-certs.json")
        receivers = _receiver_settings(tmp / "sns-certs")
        receivers["gcp-pubsub"]["certs"] = str(certs)
        receivers["datadog"]["token"] = Secret(WEBHOOK_TOKEN)
        receivers["alertmanager"]["token"] = Secret(WEBHOOK_TOKEN)
        os.environ["BRIDGE_GRAFANA_TOKEN"] = GRAFANA_TOKEN
        self.app = create_app(Settings(database_url=f"sqlite:///{tmp / 'hostile.db'}", receivers=receivers,
                                       webhook_token=Secret(WEBHOOK_TOKEN), rules_path=str(REPO / "rules")))
        self.store = self.app.config["BRIDGE_STORE"]
        self.client = self.app.test_client()

    def stored(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one())

    def last_id(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar() or 0)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        """Post one body; assert no 5xx, and that the rows are whole: a refusal added none, an acceptance added
        exactly the new alerts it names, each complete (its JSON readable, its keys set)."""
        before, last = self.stored(), self.last_id()
        r = self.client.post(path, data=body, headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})
        receiver = path.split("?")[0].removeprefix("/webhooks/")
        TALLY.setdefault(receiver, {"inputs": 0})
        TALLY[receiver]["inputs"] += 1
        TALLY[receiver][str(r.status_code)] = TALLY[receiver].get(str(r.status_code), 0) + 1
        assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:500])
        answer = r.get_json()
        if r.status_code >= 400:
            assert set(answer) == {"error", "message"}, answer
            assert self.stored() == before, "a refused body left an alert behind"
            return
        new = [item for item in answer.get("alerts", []) if item["id"] > last]
        assert self.stored() == before + len(new), "the rows added are not the alerts the answer names"
        for item in answer.get("alerts", []):
            stored = self.store.get_alert(item["id"])
            assert stored is not None
            json.dumps(stored, allow_nan=False).encode("utf-8")
            assert stored["dedup_key"] == item["dedup_key"] and stored["dedup_key"]
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(alerts.c.alert_json, alerts.c.decision_json, alerts.c.source,
                                          alerts.c.source_event_id).where(alerts.c.id > last)).all()
        for alert_json, decision_json, source, event_id in rows:
            assert isinstance(json.loads(alert_json), dict) and isinstance(json.loads(decision_json), dict)
            assert source and event_id


# Inputs and answers per receiver (the figures of RELIABILITY.md): written to BRIDGE_FUZZ_REPORT when it is set.
TALLY: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    shared_path("fixtures")
    saved = os.environ.get("BRIDGE_GRAFANA_TOKEN")
    yield Bridge(tmp_path_factory.mktemp("hostile"))
    report = os.environ.get("BRIDGE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(TALLY, indent=1, sort_keys=True), encoding="utf-8")
    if saved is None:
        os.environ.pop("BRIDGE_GRAFANA_TOKEN", None)
    else:
        os.environ["BRIDGE_GRAFANA_TOKEN"] = saved


HTTP = settings(max_examples=examples(60), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSON_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@given(data=st.data())
@HTTP
def test_datadog_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    bridge.post("/webhooks/datadog", data.draw(body_bytes(_datadog_fixture())), JSON_HEADERS)


@given(data=st.data())
@HTTP
def test_alertmanager_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    original = shared_json("fixtures/alertmanager/webhook-v4-example.assembled.json")
    bridge.post("/webhooks/alertmanager", data.draw(body_bytes(original)), JSON_HEADERS)


@given(data=st.data())
@HTTP
def test_azure_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    original = shared_json(f"fixtures/azure-budget/{data.draw(st.sampled_from(AZURE_FIXTURES))}")
    bridge.post(f"/webhooks/azure?token={AZURE_TOKEN}", data.draw(body_bytes(original)),
                {"Content-Type": "application/json"})


GENERIC = ["grafana-firing.json", "grafana-resolved.json"]


@given(data=st.data())
@HTTP
def test_generic_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    example = json.loads((REPO / "webhooks/generic/examples" / data.draw(st.sampled_from(GENERIC))).read_text())
    bridge.post("/webhooks/generic/grafana", data.draw(body_bytes(example)),
                {"Content-Type": "application/json", "Authorization": f"Bearer {GRAFANA_TOKEN}"})


@given(data=st.data())
@HTTP
def test_gcp_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    budget = shared_json(f"fixtures/gcp-budget/{data.draw(st.sampled_from(GCP_FIXTURES))}")
    envelope = pubsub_push({}, message_id=str(data.draw(st.integers(0, 10**9))), budget_id="b-1")
    envelope["message"]["data"] = base64.b64encode(data.draw(body_bytes(budget))).decode("ascii")
    token = bridge.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT)
    bridge.post("/webhooks/gcp-pubsub", json.dumps(envelope).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})


@given(data=st.data())
@HTTP
def test_sns_http_never_5xx(bridge: Bridge, data: st.DataObject) -> None:
    # Signed, so the hostile Message reaches the parser. A signer can only sign valid Unicode.
    envelope = bridge.sns.notification(without_surrogates(data.draw(sns_messages())), topic=TOPIC)
    bridge.post("/webhooks/aws-sns", json.dumps(envelope).encode(),
                {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"})


CONTENT_TYPES = ["", "text/plain", "text/html", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                 "application/json; charset=latin-1", "application/jsonx", "APPLICATION/JSON", "application/xml",
                 "application/problem+json", "application/json; charset=utf-8; boundary=\x00", "*/*", "json",
                 "application/json, text/plain", "text/plain; charset=UTF-8"]


@st.composite
def signed_request(draw: st.DrawFn, bridge: Bridge) -> tuple[str, bytes, dict[str, str]]:
    """A receiver's valid request (real fixture, right credential), for the hostile content type to spoil."""
    receiver = draw(st.sampled_from(["datadog", "alertmanager", "azure", "generic/grafana", "gcp-pubsub",
                                     "aws-sns"]))
    auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    if receiver == "datadog":
        return "/webhooks/datadog", json.dumps(_datadog_fixture()).encode(), auth
    if receiver == "alertmanager":
        body = shared_json("fixtures/alertmanager/webhook-v4-example.assembled.json")
        return "/webhooks/alertmanager", json.dumps(body).encode(), auth
    if receiver == "azure":
        body = shared_json(f"fixtures/azure-budget/{draw(st.sampled_from(AZURE_FIXTURES))}")
        return f"/webhooks/azure?token={AZURE_TOKEN}", json.dumps(body).encode(), {}
    if receiver == "generic/grafana":
        example = (REPO / "webhooks/generic/examples/grafana-firing.json").read_bytes()
        return "/webhooks/generic/grafana", example, {"Authorization": f"Bearer {GRAFANA_TOKEN}"}
    if receiver == "gcp-pubsub":
        budget = shared_json(f"fixtures/gcp-budget/{draw(st.sampled_from(GCP_FIXTURES))}")
        envelope = pubsub_push(budget, message_id=str(draw(st.integers(0, 10**9))), budget_id="b-ct")
        token = bridge.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT)
        return "/webhooks/gcp-pubsub", json.dumps(envelope).encode(), {"Authorization": f"Bearer {token}"}
    envelope = bridge.sns.notification(shared_text("fixtures/aws-budgets/budgets-actual-daily-2023-03-05.txt"),
                                       topic=TOPIC)
    return "/webhooks/aws-sns", json.dumps(envelope).encode(), {"x-amz-sns-message-type": "Notification"}


@given(data=st.data())
@HTTP
def test_every_receiver_with_a_hostile_content_type_or_a_spoiled_body_never_5xx(bridge: Bridge,
                                                                                data: st.DataObject) -> None:
    path, body, headers = data.draw(signed_request(bridge))
    content_type = data.draw(st.one_of(st.sampled_from(CONTENT_TYPES), st.text(max_size=30).map(
        lambda t: t.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", ""))))
    spoil = data.draw(st.sampled_from(["none", "none", "truncate", "empty", "bytes", "twice"]))
    if spoil == "truncate":
        body = body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    elif spoil == "empty":
        body = b""
    elif spoil == "bytes":
        body = data.draw(st.binary(max_size=200))
    elif spoil == "twice":
        body = body + body
    bridge.post(path, body, {**headers, "Content-Type": content_type})


# -- the review's cases, exactly ---------------------------------------------------------------------------

def test_a_lone_surrogate_is_replaced_and_the_alert_kept(bridge: Bridge) -> None:
    body = json.dumps({**DATADOG, "id": "\udcff", "title": "Checkout \ud83d errors"}).encode()
    r = bridge.client.post("/webhooks/datadog", data=body, headers=JSON_HEADERS)
    assert r.status_code == 202, r.get_data(as_text=True)
    stored = bridge.store.get_alert(r.get_json()["alerts"][0]["id"])
    assert stored["title"] == "Checkout \ufffd errors"


@pytest.mark.parametrize(("path", "body"), [
    ("/webhooks/alertmanager", b"[" * 100_000 + b"]" * 100_000),
    ("/webhooks/datadog", json.dumps(DATADOG).replace('"77"', "NaN").encode()),
    ("/webhooks/datadog", json.dumps(DATADOG).replace('"77"', "-Infinity").encode()),
    ("/webhooks/generic/grafana", b"null"),
    ("/webhooks/generic/grafana", b"[]"),
    ("/webhooks/generic/grafana", b'"hello"'),
    ("/webhooks/generic/grafana", b"3"),
], ids=["deep-nesting", "nan", "minus-infinity", "generic-null", "generic-list", "generic-string",
        "generic-number"])
def test_the_reviews_hostile_bodies_get_400(bridge: Bridge, path: str, body: bytes) -> None:
    token = GRAFANA_TOKEN if "generic" in path else WEBHOOK_TOKEN
    before = bridge.stored()
    r = bridge.client.post(path, data=body, headers={**JSON_HEADERS, "Authorization": f"Bearer {token}"})
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["error"] == "bad_payload"
    assert bridge.stored() == before


def test_a_forged_sns_envelope_with_a_lone_surrogate_is_refused_not_a_500(bridge: Bridge) -> None:
    envelope = bridge.sns.notification("budget text", topic=TOPIC)
    body = json.dumps(envelope).replace("budget text", "budget \\udcff text").encode()
    r = bridge.client.post("/webhooks/aws-sns", data=body,
                           headers={"Content-Type": "text/plain; charset=UTF-8"})
    assert r.status_code == 401, r.get_data(as_text=True)


# -- what a rule cannot compare, or a store cannot hold ---------------------------------------------------------

def _request(body: dict[str, Any] | bytes, content_type: str = "application/json") -> InboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest(body=raw, headers=Headers({"Content-Type": content_type}))


PARSERS: dict[str, Any] = {"datadog": DatadogReceiver(), "alertmanager": AlertmanagerReceiver(),
                           "azure": AzureReceiver(), "gcp-pubsub": GcpPubSubReceiver(), "aws-sns": AwsSnsReceiver()}
CTX = ReceiverContext(now=NOW)


@pytest.mark.parametrize(("receiver", "body", "unparsed"), [
    ("datadog", {**DATADOG, "text": "bridge.value: nan"}, "nan"),
    ("datadog", {**DATADOG, "text": "**bridge.value:** -Inf %"}, "-Inf"),
    ("datadog", {**DATADOG, "text": "Users affected.\nbridge.value: 1e999"}, "1e999"),
    ("alertmanager", alertmanager_body({"value": "NaN"}), "NaN"),      # Prometheus renders {{ $value }} so
    ("alertmanager", alertmanager_body({"value": "+Inf"}), "+Inf"),    # for a division by zero
], ids=["datadog-nan", "datadog-minus-inf-markdown", "datadog-overflow", "alertmanager-nan", "alertmanager-inf"])
def test_a_value_that_is_not_finite_is_dropped_with_a_notice(receiver: str, body: dict[str, Any],
                                                              unparsed: str) -> None:
    parsed = PARSERS[receiver].parse(_request(body), CTX)
    [alert] = parsed.alerts
    assert alert.value is None and not alert.dimensions
    assert alert.fields["value_unparsed"] == unparsed
    assert [n.kind for n in parsed.notices] == ["value_not_finite"]


@pytest.mark.parametrize("text", ["bridge.value: {{value}}", "bridge.value: ", "bridge.value: n/a",
                                  "bridge.value: information pending"],
                         ids=["unrendered", "empty-no-data", "words", "word-starting-with-inf"])
def test_a_datadog_value_that_is_merely_absent_gives_no_notice(text: str) -> None:
    parsed = PARSERS["datadog"].parse(_request({**DATADOG, "text": text}), CTX)
    assert parsed.alerts[0].value is None and parsed.notices == []


GENERIC_SOURCE = """\
token_env: T
extract:
  title: item.title
  group_key: item.id
  state: item.state
  value: {value}
"""


@pytest.mark.parametrize(("expression", "raw", "notice"), [
    ("item.v", "NaN", "value_not_finite"),
    ("to_number(item.v)", "9" * 400, "value_not_finite"),          # an int past any float: was an OverflowError
    ("ceil(to_number(item.v))", "1.5e999", "extraction_failed"),  # ceil(inf): was an OverflowError
    ("ceil(to_number(item.v))", "12.5", None),
], ids=["nan-text", "to-number-past-float", "ceil-of-infinity", "finite-control"])
def test_generic_values_the_senders_numbers_break(expression: str, raw: str, notice: str | None) -> None:
    source = parse_generic_source(GENERIC_SOURCE.format(value=expression), path="t.yaml", environ={"T": "t"})
    parsed = GenericReceiver(source).parse(_request({"title": "t", "id": "1", "state": "firing", "v": raw}), CTX)
    [alert] = parsed.alerts
    assert [n.kind for n in parsed.notices] == ([notice] if notice else [])
    assert alert.value == (13.0 if notice is None else None)


def _azure(**data: Any) -> dict[str, Any]:
    body = copy.deepcopy(shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json"))
    body["data"]["alertContext"]["AlertData"].update(data)
    return dict(body)


def _cad_envelope(**impact: Any) -> bytes:
    cad = copy.deepcopy(shared_json("fixtures/aws-cost-anomaly/cad-sns-message-documented-current.json"))
    cad["impact"].update(impact)
    envelope = {"Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Message": json.dumps(cad),
                "Timestamp": "2026-03-06T12:00:00.000Z"}
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(("receiver", "body", "field"), [
    ("azure", lambda: _azure(SpentAmount=[1, 2]), "SpentAmount"),       # its text "[1, 2]" read as 1.2 before
    ("azure", lambda: _azure(BudgetThreshold={"amount": 5}), "BudgetThreshold"),
    ("gcp-pubsub", lambda: pubsub_push({"costAmount": [120], "budgetAmount": 100}, message_id="1", budget_id="b"),
     "costAmount"),
    ("aws-sns", lambda: _cad_envelope(totalActualSpend={"amount": 1}), "impact.totalActualSpend"),
], ids=["azure-list", "azure-object", "gcp-list", "sns-cad-object"])
def test_an_amount_that_is_not_a_number_or_text_is_a_400_naming_the_field(receiver: str, body: Any,
                                                                          field: str) -> None:
    with pytest.raises(BadPayload) as err:
        PARSERS[receiver].parse(_request(body()), CTX)
    assert err.value.status == 400 and field in err.value.message


def test_a_budgets_text_dated_year_one_has_no_yesterday_but_is_kept() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-daily-2023-03-05.txt").replace(
        "March 05, 2023", "January 01, 0001")
    envelope = {"Type": "Notification", "MessageId": "m-2", "TopicArn": TOPIC, "Message": text,
                "Timestamp": "2026-03-06T12:00:00.000Z"}
    [alert] = PARSERS["aws-sns"].parse(_request(json.dumps(envelope).encode()), CTX).alerts
    assert "period_start" not in alert.fields  # was an OverflowError (a 500) computing "yesterday"


@pytest.mark.parametrize(("body", "content_type"), [
    (json.dumps({**DATADOG, "title": "Checkout \u0000 errors"}).encode(), "application/json"),
    (b"id=form-1&alert_id=77&title=Checkout%20%00%20errors", "application/x-www-form-urlencoded"),
], ids=["json-escape", "form-percent-00"])
def test_nul_becomes_the_replacement_character(body: bytes, content_type: str) -> None:
    [alert] = PARSERS["datadog"].parse(_request(body, content_type), CTX).alerts
    assert alert.title == "Checkout \ufffd errors"


def test_a_deeply_nested_token_is_a_401_before_any_signature_check() -> None:
    part = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()  # fits an 8 KB header
    header = base64.urlsafe_b64encode(b'{"alg":"RS256"}').rstrip(b"=").decode()
    request = InboundRequest(body=b"{}", headers=Headers({"Authorization": f"Bearer {header}.{part}.c2ln"}))
    ctx = ReceiverContext(now=NOW, settings={"audience": AUDIENCE, "certs": {"k": "not used"}})
    with pytest.raises(AuthError) as err:
        PARSERS["gcp-pubsub"].authenticate(request, ctx)
    assert err.value.status == 401  # was a RecursionError: a 500 and a logged traceback per request
