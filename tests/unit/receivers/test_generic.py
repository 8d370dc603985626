"""Generic JSON webhook receiver: the shipped sources and examples, golden bad configs, parsing, auth."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import AuthError, BadPayload, ConfigErrors
from bridge.model import AlertState, Link
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from bridge.receivers.generic import (
    GenericReceiver,
    GenericSource,
    coerce_links,
    coerce_tags,
    load_generic_sources,
    parse_generic_source,
)
from tests.support.shared import REPO

SOURCES = REPO / "rules" / "sources"
EXAMPLES = REPO / "webhooks" / "generic" / "examples"
NOW = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
CTX = ReceiverContext(now=NOW)
ENV = {"BRIDGE_GRAFANA_TOKEN": "grafana-t0ken", "BRIDGE_STATUSPAGE_TOKEN": "statuspage-t0ken"}


@pytest.fixture(scope="module")
def shipped() -> dict[str, GenericSource]:
    return load_generic_sources(SOURCES, ENV)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def parse(source: GenericSource, body: Any):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return GenericReceiver(source).parse(InboundRequest(body=raw), CTX)


def source_from(text: str, environ: dict[str, str] | None = None, name: str = "test") -> GenericSource:
    return parse_generic_source(text, path=f"{name}.yaml", environ={"T": "tok"} if environ is None else environ)


MINIMAL = """\
token_env: T
extract:
  title: item.title
  state: item.state
  group_key: item.id
"""


# ---------------------------------------------------------------------------------------------------------------
# Shipped sources and their worked examples


def test_shipped_sources_load(shipped: dict[str, GenericSource]) -> None:
    assert sorted(shipped) == ["grafana", "statuspage"]
    assert shipped["grafana"].token == "grafana-t0ken"
    assert shipped["grafana"].source == "generic:grafana"
    assert GenericReceiver(shipped["statuspage"]).name == "generic/statuspage"


def test_every_example_payload_parses_without_warnings(shipped: dict[str, GenericSource]) -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        source = shipped[path.name.split("-", 1)[0]]
        parsed = parse(source, path.read_bytes())
        assert parsed.alerts, path.name
        assert parsed.notices == [], (path.name, parsed.notices)


def test_grafana_batch_is_split_with_value_and_dimension(shipped: dict[str, GenericSource]) -> None:
    first, second = parse(shipped["grafana"], example("grafana-firing.json")).alerts
    assert first.to_dict(include_raw=False) == {
        "source": "generic:grafana",
        "source_event_id": "8a0c9d6e2f4b1a37:firing:2026-01-28T11:50:00Z:-:12.5",
        "received_at": "2026-01-28T12:00:00+00:00",
        "title": "Checkout failing for 12.5 % of users",
        "message": "Checkout failing for 12.5 % of users\n\n12.5 % of checkout requests fail with 5xx since the "
                   "last deploy.",
        "state": "firing",
        "group_key": "generic:grafana:8a0c9d6e2f4b1a37",
        "tags": ["alertname:CheckoutErrorRate", "category:deployment", "dimension:users_affected_pct",
                 "grafana_folder:Checkout", "service:checkout", "severity:critical", "team:payments"],
        "service": "checkout",
        "metric": None,
        "value": 12.5,
        "dimensions": {"users_affected_pct": 12.5},
        "categories": ["deployment"],
        "links": [
            {"href": "https://grafana.example.com/alerting/grafana/d9f3e1a7/view?orgId=1",
             "text": "Grafana alert rule"},
            {"href": "https://grafana.example.com/d/checkout-slo?orgId=1", "text": "Dashboard"},
            {"href": "https://grafana.example.com/d/checkout-slo?orgId=1&viewPanel=4", "text": "Panel"},
            {"href": "https://runbooks.example.com/checkout/error-rate", "text": "Runbook"},
            {"href": "https://grafana.example.com/alerting/silence/new?alertmanager=grafana&matcher=alertname"
                     "%3DCheckoutErrorRate&matcher=service%3Dcheckout&orgId=1", "text": "Silence"},
        ],
        "fields": {
            "generic_source": "grafana",
            "item_index": "0",
            "source_state": "firing",
            "alertname": "CheckoutErrorRate",
            "severity": "critical",
            "fingerprint": "8a0c9d6e2f4b1a37",
            "starts_at": "2026-01-28T11:50:00Z",
            "ends_at": "0001-01-01T00:00:00Z",
            "values": '{"B":12.5,"C":1}',
            "receiver": "incident-bridge",
            "group_key": '{}/{}:{grafana_folder="Checkout"}',
            "grafana_url": "https://grafana.example.com/",
        },
        "cost": None,
    }
    # No dimension label, no value annotation: nothing invented; empty URLs give no links.
    assert (second.title, second.value, dict(second.dimensions), second.service) == (
        "Memory usage above 90 % in zone eu-1", None, {}, None)
    assert [link.text for link in second.links] == ["Grafana alert rule", "Silence"]
    assert second.fields["item_index"] == "1"


def test_grafana_group_key_is_stable_from_firing_to_resolved(shipped: dict[str, GenericSource]) -> None:
    firing = parse(shipped["grafana"], example("grafana-firing.json")).alerts[0]
    [resolved] = parse(shipped["grafana"], example("grafana-resolved.json")).alerts
    assert resolved.state is AlertState.RESOLVED
    assert resolved.group_key == firing.group_key == "generic:grafana:8a0c9d6e2f4b1a37"
    assert resolved.source_event_id == "8a0c9d6e2f4b1a37:resolved:2026-01-28T11:50:00Z:2026-01-28T12:20:00Z:12.5"


@pytest.mark.parametrize(("file", "state", "source_state", "event_id", "message"), [
    ("statuspage-incident-investigating.json", AlertState.FIRING, "investigating",
     "lbkhbwn21v5q:investigating:2026-01-28T11:48:12.000Z",
     "We are investigating elevated error rates on card payments."),
    ("statuspage-incident-resolved.json", AlertState.RESOLVED, "resolved",
     "lbkhbwn21v5q:resolved:2026-01-28T12:31:02.000Z", "This incident has been resolved."),
])
def test_statuspage_incident_state_mapping(shipped: dict[str, GenericSource], file: str, state: AlertState,
                                           source_state: str, event_id: str, message: str) -> None:
    [alert] = parse(shipped["statuspage"], example(file)).alerts
    assert alert.state is state
    assert alert.fields["source_state"] == source_state
    assert alert.source_event_id == event_id
    assert alert.group_key == "generic:statuspage:incident:lbkhbwn21v5q"
    assert alert.title == "Elevated error rates on card payments"
    assert alert.message == message
    assert alert.service == "Payments API"
    assert alert.tags == (("impact", "major"), ("component", "Payments API"), ("page", "j2mfxwj97wnj"))
    assert alert.links == (Link("https://stspg.io/xk7n2p4q", "Status page incident"),)
    assert (alert.fields["kind"], alert.fields["impact"]) == ("incident", "major")


def test_statuspage_component_update(shipped: dict[str, GenericSource]) -> None:
    [alert] = parse(shipped["statuspage"], example("statuspage-component-update.json")).alerts
    assert (alert.title, alert.state, alert.group_key, alert.source_event_id) == (
        "Payments API: partial_outage", AlertState.FIRING, "generic:statuspage:component:rb5wq1dczvbm",
        "k7730b5v92bv")
    assert alert.fields["kind"] == "component"
    assert alert.links == ()


@pytest.mark.parametrize(("status", "state"), [
    ("identified", AlertState.FIRING), ("monitoring", AlertState.FIRING), ("postmortem", AlertState.RESOLVED),
    ("scheduled", AlertState.RESOLVED), ("Investigating", AlertState.FIRING),
])
def test_statuspage_state_map(shipped: dict[str, GenericSource], status: str, state: AlertState) -> None:
    body = json.loads(example("statuspage-incident-investigating.json"))
    body["incident"]["status"] = status
    assert parse(shipped["statuspage"], body).alerts[0].state is state


# ---------------------------------------------------------------------------------------------------------------
# Parsing behaviour of one small source


def test_missing_event_id_is_a_stable_hash_of_the_item() -> None:
    source = source_from(MINIMAL)
    a = parse(source, {"title": "Disk full", "state": "firing", "id": "db-1"}).alerts[0]
    b = parse(source, {"id": "db-1", "state": "firing", "title": "Disk full"}).alerts[0]
    c = parse(source, {"title": "Disk full", "state": "resolved", "id": "db-1"}).alerts[0]
    assert a.source_event_id == b.source_event_id  # key order does not matter
    assert a.source_event_id.startswith("sha256:") and a.source_event_id.endswith(":firing")
    assert c.source_event_id != a.source_event_id
    assert a.group_key == c.group_key == "generic:test:db-1"


def test_missing_group_key_falls_back_to_title_never_time() -> None:
    source = source_from(MINIMAL)
    parsed = parse(source, {"title": "Disk full", "state": "firing", "at": "2026-01-28T11:00:00Z"})
    again = parse(source, {"title": "Disk full", "state": "resolved", "at": "2026-01-28T12:00:00Z"})
    assert parsed.alerts[0].group_key == again.alerts[0].group_key
    assert parsed.alerts[0].group_key.startswith("generic:test:title-")
    assert parsed.alerts[0].fields["group_key_fallback"] == "title"
    assert [n.kind for n in parsed.notices] == ["group_key_missing"]


def test_unknown_state_pages_with_a_notice() -> None:
    parsed = parse(source_from(MINIMAL), {"title": "t", "state": "weird", "id": "1"})
    assert parsed.alerts[0].state is AlertState.FIRING
    assert [n.message for n in parsed.notices] == ["state 'weird' of item 0 is not in state_map; treated as firing"]


def test_defaults_apply() -> None:
    source = source_from("""\
token_env: T
extract:
  title: item.title
  group_key: item.id
  value: item.pct
  categories: item.kind
  tags: item.tags
defaults:
  state: firing
  dimension: customers_affected_pct
  service: billing
  categories: [cloud_cost]
  tags: {team: finops}
""")
    [alert] = parse(source, {"title": "t", "id": "1", "pct": "30 %", "kind": "security",
                             "tags": "env:prod,region:eu"}).alerts
    assert alert.state is AlertState.FIRING
    assert dict(alert.dimensions) == {"customers_affected_pct": 30.0}
    assert alert.service == "billing"
    assert alert.categories == frozenset({"cloud_cost", "security"})
    assert alert.tags == (("env", "prod"), ("region", "eu"), ("team", "finops"))


@pytest.mark.parametrize(("raw", "expected"), [
    (["env:prod", "team:db", "bare"], (("env", "prod"), ("team", "db"), ("bare", ""))),
    ({"env": "prod", "zone": ["a", "b"], "gone": None}, (("env", "prod"), ("zone", "a"), ("zone", "b"))),
    ("env:prod, url:http://x", (("env", "prod"), ("url", "http://x"))),
    (None, ()),
])
def test_tags_shapes(raw: Any, expected: tuple[tuple[str, str], ...]) -> None:
    assert coerce_tags(raw) == expected


def test_links_shapes() -> None:
    assert coerce_links(["https://a", {"url": "https://b", "name": "B"}, {"href": ""}, None]) == (
        Link("https://a"), Link("https://b", "B"))
    assert coerce_links("https://c") == (Link("https://c"),)


@pytest.mark.parametrize(("raw", "value"), [(12, 12.0), ("12.5", 12.5), (" 7% ", 7.0), ("n/a", None),
                                            ([None, "x", "3"], 3.0), (True, None)])
def test_value_parsing_is_tolerant(raw: Any, value: float | None) -> None:
    [alert] = parse(source_from(MINIMAL + "  value: item.v\n"), {"title": "t", "state": "firing", "id": "1",
                                                                 "v": raw}).alerts
    assert alert.value == value


def test_runtime_expression_error_keeps_the_alert() -> None:
    source = source_from(MINIMAL + "  message: \"join(', ', item.lines)\"\n")
    parsed = parse(source, {"title": "t", "state": "firing", "id": "1", "lines": [1, 2]})
    assert parsed.alerts[0].message == ""
    assert [n.kind for n in parsed.notices] == ["extraction_failed"]


def test_items_and_root() -> None:
    source = source_from("""\
token_env: T
items: events
extract:
  title: "join(' / ', [root.host, item.check])"
  state: item.ok
  group_key: "join(':', [root.host, item.check])"
state_map:
  true: resolved
  false: firing
""")
    alerts = parse(source, {"host": "db-1", "events": [{"check": "disk", "ok": False},
                                                       {"check": "cpu", "ok": True}]}).alerts
    assert [(a.title, a.state, a.group_key) for a in alerts] == [
        ("db-1 / disk", AlertState.FIRING, "generic:test:db-1:disk"),
        ("db-1 / cpu", AlertState.RESOLVED, "generic:test:db-1:cpu"),
    ]


@pytest.mark.parametrize(("body", "message"), [
    (b"nope", "the body is not valid JSON: Expecting value at line 1, column 1 (character 0)"),
    ({"events": []}, "the 'items' expression 'events' of source 'test' found no items in this body"),
    ({"other": 1}, "the 'items' expression 'events' of source 'test' found no items in this body"),
])
def test_bad_payloads(body: Any, message: str) -> None:
    source = source_from(MINIMAL + "items: events\n")
    with pytest.raises(BadPayload) as info:
        parse(source, body)
    assert info.value.message == message


# ---------------------------------------------------------------------------------------------------------------
# Golden bad configs: exact messages, with file:line:column and the fix hint

HINT_JMESPATH = "see https://jmespath.org/specification.html; quote string literals with ' and constants with `"
HINT_QUOTE = ("quote the expression: in YAML a value starting with '[', '{', '`', '@', '*' or a quote is not plain "
              "text, e.g. title: \"[item.a, item.b] | join(' ', @)\"")
FUNCTIONS = ("abs, avg, ceil, contains, ends_with, floor, join, keys, length, map, max, max_by, merge, min, "
             "min_by, not_null, reverse, sort, sort_by, starts_with, sum, to_array, to_number, to_string, type, "
             "values")

GOLDEN = [
    pytest.param(
        """\
extract:
  title: item.labels.
  state: item.status
  group_key: "item.fingerprint ||| x"
""",
        [
            f"{{path}}:2:22: invalid JMESPath in 'extract.title': the expression ends too early (fix: "
            f"{HINT_JMESPATH})",
            f"{{path}}:4:34: invalid JMESPath in 'extract.group_key': unexpected '|' at character 20 (fix: "
            f"{HINT_JMESPATH})",
        ],
        id="invalid-jmespath",
    ),
    pytest.param(
        """\
extract:
  title: "nofunc(item.a)"
  group_key: "join(item.a)"
  state: 'item.`x'
""",
        [
            f"{{path}}:2:10: invalid JMESPath in 'extract.title': unknown function nofunc() (fix: available "
            f"functions: {FUNCTIONS})",
            f"{{path}}:3:14: invalid JMESPath in 'extract.group_key': join() takes 2 argument(s), got 1 (fix: "
            f"available functions: {FUNCTIONS})",
            f"{{path}}:4:16: invalid JMESPath in 'extract.state': Unclosed ` delimiter at character 6 (fix: "
            f"{HINT_JMESPATH})",
        ],
        id="unknown-function-arity-lexer",
    ),
    pytest.param(
        """\
name: grafana
extract:
  title: item.title
  state: item.status
  group_key: item.id
  servce: item.service
statemap:
  ok: resolved
""",
        [
            "{path}:6:3: unknown key 'servce' in 'extract' (fix: did you mean 'service'? allowed keys: title, "
            "state, group_key, event_id, value, dimension, tags, service, message, links, categories, metric, "
            "fields)",
            "{path}:7:1: unknown key 'statemap' in source (fix: did you mean 'state_map'? allowed keys: name, "
            "description, token_env, token_file, items, extract, state_map, defaults)",
        ],
        id="unknown-keys",
    ),
    pytest.param(
        """\
extract:
  state: item.status
""",
        [
            "{path}:2:3: missing required key 'extract.title' (fix: add 'title: <JMESPath expression>'; "
            "responders read it)",
            "{path}:2:3: missing required key 'extract.group_key' (fix: add 'group_key: <JMESPath expression>'; "
            "it becomes the PagerDuty dedup key: it must be stable for one alert from firing to resolved, and "
            "never a timestamp)",
        ],
        id="missing-required-extractions",
    ),
    pytest.param(
        """\
extract:
  title: item.title
  group_key: item.id
""",
        [
            "{path}:2:3: missing 'extract.state' (and no 'defaults.state') (fix: add 'state: <expression>' "
            "giving the sender's state (map it with 'state_map'), or 'defaults: {state: firing}' for a sender "
            "that never resolves)",
        ],
        id="missing-state",
    ),
    pytest.param(
        """\
name: demo
""",
        [
            "{path}:1:1: missing required key 'extract' (fix: add 'extract:' with at least 'title' and "
            "'group_key' JMESPath expressions)",
        ],
        id="missing-extract",
    ),
    pytest.param(
        """\
items: [alerts]
extract:
  title: 42
  state: item.status
  group_key: item.id
  links: [{href: item.url}]
state_map:
  firing: firing
  ok: closed
defaults:
  categories: {a: 1}
token_env: "my token"
""",
        [
            f"{{path}}:1:8: 'items' must be a JMESPath expression (a string), got a list (fix: {HINT_QUOTE})",
            "{path}:3:10: 'extract.title' must be a JMESPath expression (a string), got a number (fix: write a "
            "JMESPath expression as a string; a constant is written `value` (backquotes) inside quotes, e.g. "
            "\"`42`\")",
            f"{{path}}:6:10: 'extract.links' must be a JMESPath expression (a string), got a list (fix: "
            f"{HINT_QUOTE})",
            "{path}:9:7: 'state_map.ok' must be 'firing' or 'resolved', got 'closed' (fix: map every sender "
            "state to firing or resolved)",
            "{path}:11:15: 'defaults.categories' must be a string or a list of strings, got a mapping (fix: "
            "write: [security] or 'security,infrastructure')",
            "{path}:12:12: 'token_env' must name an environment variable, got 8 characters that are not a "
            "variable name (fix: write the variable's name (e.g. BRIDGE_GRAFANA_TOKEN), never the token itself)",
        ],
        id="wrong-types",
    ),
    pytest.param(
        """\
token_env: A
token_file: b
name: Bad Name
extract:
  title: a
  title: b
  group_key: c
  state: d
""",
        [
            "{path}:2:1: 'token_env' and 'token_file' are both set (fix: keep only one of them)",
            "{path}:3:7: invalid source name 'Bad Name' (fix: use lower-case letters, digits, '-', '_' or '.', "
            "starting with a letter or digit: it becomes the URL /webhooks/generic/<name>)",
            "{path}:6:3: duplicate key 'title' in 'extract' (first at line 5) (fix: keep only one)",
        ],
        id="token-twice-bad-name-duplicate-key",
    ),
    pytest.param(
        """\
extract:
  title: item.a
   state: b
""",
        ["{path}:3:9: invalid YAML: mapping values are not allowed here (fix: check indentation and quoting near "
         "this position)"],
        id="yaml-syntax",
    ),
    pytest.param(
        "- a\n",
        ["{path}:1:1: a source file must be a mapping of keys, got a list (fix: start with keys such as: name, "
         "description, token_env, token_file, items, extract, state_map, defaults)"],
        id="not-a-mapping",
    ),
    pytest.param(
        "",
        ["{path}: the source file is empty (fix: describe the source: at least 'extract' with 'title' and "
         "'group_key')"],
        id="empty-file",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden_bad_configs(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_generic_sources(tmp_path, {"A": "x"})
    assert [str(e) for e in info.value.errors] == [m.replace("{path}", str(path)) for m in expected]


def test_all_files_are_reported_at_once_and_names_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\n" + MINIMAL, encoding="utf-8")
    (tmp_path / "b.yml").write_text("name: same\n" + MINIMAL, encoding="utf-8")
    (tmp_path / "c.yaml").write_text("extract: 1\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a source", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_generic_sources(tmp_path, {})
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'b.yml'}:1:7: source name 'same' is already used by {tmp_path / 'a.yaml'} (fix: give each "
        f"source a unique 'name' (or file name): it is the URL /webhooks/generic/<name>)",
        f"{tmp_path / 'c.yaml'}:1:10: 'extract' must be a mapping of JMESPath expressions, got a number (fix: "
        f"write one key per line: title: item.name)",
    ]


def test_name_defaults_to_file_stem_and_missing_directory_is_empty(tmp_path: Path) -> None:
    (tmp_path / "my-tool.yaml").write_text(MINIMAL, encoding="utf-8")
    assert list(load_generic_sources(tmp_path, {"T": "x"})) == ["my-tool"]
    assert load_generic_sources(tmp_path / "absent", {}) == {}


def test_yaml_boolean_state_map_keys_keep_their_text() -> None:
    source = source_from(MINIMAL + "state_map:\n  true: resolved\n  OK: resolved\n  1: firing\n")
    assert dict(source.state_map) == {"true": AlertState.RESOLVED, "ok": AlertState.RESOLVED,
                                      "1": AlertState.FIRING}


# ---------------------------------------------------------------------------------------------------------------
# Tokens: configuration and authentication


def test_token_sources(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n", encoding="utf-8")
    assert source_from("token_env: T\n" + MINIMAL.split("\n", 1)[1], {"T": " env-token "}).token == "env-token"
    assert source_from(MINIMAL, {"T_FILE": str(secret)}).token == "from-file"
    by_file = parse_generic_source(f"token_file: {secret.name}\n" + MINIMAL.split("\n", 1)[1],
                                   path=str(tmp_path / "s.yaml"), environ={})
    assert by_file.token == "from-file"
    unset = source_from(MINIMAL, {})
    assert (unset.token, unset.token_problem) == (None, "environment variable T (or T_FILE) is not set")
    none = source_from(MINIMAL.split("\n", 1)[1], {})
    assert none.token_problem == "no token configured (add 'token_env: NAME' or 'token_file: PATH')"
    missing = parse_generic_source("token_file: nope\n" + MINIMAL.split("\n", 1)[1],
                                   path=str(tmp_path / "s.yaml"), environ={})
    assert missing.token is None
    assert missing.token_problem == f"token file {tmp_path / 'nope'} (from token_file) cannot be read: " \
                                    f"No such file or directory"
    assert "env-token" not in repr(source_from(MINIMAL, {"T": "env-token"}))


def auth_request(headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> InboundRequest:
    return InboundRequest(body=b"{}", headers=Headers(headers or {}), query=query or {},
                          path="/webhooks/generic/test")


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"statuspage:{password}".encode()).decode()


@pytest.mark.parametrize("req", [
    pytest.param(auth_request({"Authorization": "Bearer tok"}), id="bearer"),
    pytest.param(auth_request({"Authorization": basic("tok")}), id="basic-password"),
    pytest.param(auth_request({"X-Bridge-Token": "tok"}), id="x-bridge-token"),
    pytest.param(auth_request(query={"token": "tok"}), id="query"),
])
def test_right_token_via_each_method(req: InboundRequest) -> None:
    GenericReceiver(source_from(MINIMAL, {"T": "tok"})).authenticate(req, CTX)


@pytest.mark.parametrize(("req", "message"), [
    pytest.param(auth_request(), "missing credentials: send the token as 'Authorization: Bearer <token>', the "
                                 "basic-auth password, an 'X-Bridge-Token' header or the 'token' query parameter",
                 id="none"),
    pytest.param(auth_request({"Authorization": "Bearer wrong-value-123"}), "wrong webhook token", id="bearer"),
    pytest.param(auth_request({"X-Bridge-Token": "wrong-value-123"}), "wrong webhook token", id="header"),
    pytest.param(auth_request(query={"token": "wrong-value-123"}), "wrong webhook token", id="query"),
])
def test_wrong_token_is_401_and_not_echoed(req: InboundRequest, message: str) -> None:
    with pytest.raises(AuthError) as info:
        GenericReceiver(source_from(MINIMAL, {"T": "tok"})).authenticate(req, CTX)
    assert info.value.status == 401
    assert info.value.message == message
    assert "wrong-value-123" not in json.dumps(info.value.to_json())


def test_no_token_configured_is_always_401_with_a_message_for_the_operator() -> None:
    receiver = GenericReceiver(source_from(MINIMAL.split("\n", 1)[1], {}))
    for req in (auth_request(), auth_request({"Authorization": "Bearer anything"}),
                auth_request(query={"token": ""})):
        with pytest.raises(AuthError) as info:
            receiver.authenticate(req, CTX)
        assert info.value.status == 401
        assert info.value.to_json() == {
            "error": "token_not_configured",
            "message": "generic source 'test' has no webhook token configured, and generic webhooks are never "
                       "open: set 'token_env' (or 'token_file') in its source file and provide the token",
        }
