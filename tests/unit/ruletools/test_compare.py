"""`rules diff`: replaying alerts through two rulesets and reporting what would change."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.errors import ConfigError
from bridge.model import Action, Alert
from bridge.rules.loader import compile_sources, shipped_rules_dir
from bridge.rules.model import Ruleset
from bridge.ruletools.compare import (
    Change,
    changes_json,
    compare_paths,
    diff_rulesets,
    format_changes,
    is_database_url,
    load_replay,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

PROCESS = """
dimensions:
  users_affected_pct:
    thresholds:
      P0: {gt: 20}
      P1: {gte: 10, lte: 20}
      P2: {gte: 5, lt: 10}
      P3: {gt: 0, lt: 5}
roles:
  Lead: {}
  Coordinator: {}
  InfoSec: {}
paging:
  P0: {roles: [Coordinator, Lead]}
  P1: {roles: [Coordinator, Lead]}
  P2: {roles: [Lead]}
  P3: {roles: [Lead]}
  categories: {security: [InfoSec]}
categories:
  security: {}
"""

CURRENT_RULES = """
rules:
  - name: no-data
    match: {source: datadog, transition: No Data}
    action: record
  - name: datadog
    match: {source: datadog}
"""

# The candidate pages No Data for checkout at P2, and treats the security tag as a security incident.
CANDIDATE_RULES = """
rules:
  - name: checkout-no-data
    match: {source: datadog, transition: No Data, service: checkout}
    severity: P2
  - name: no-data
    match: {source: datadog, transition: No Data}
    action: record
  - name: security-tag
    match: {source: datadog, tags: {security: attack}}
    categories: [security]
    continue: true
  - name: datadog
    match: {source: datadog}
"""


def ruleset(rules: str) -> Ruleset:
    return compile_sources([("process.yaml", PROCESS), ("rules.yaml", rules)]).ruleset


def alert(title: str, **kw: object) -> Alert:
    data: dict[str, object] = {"source": "datadog", "title": title, "received_at": NOW.isoformat(),
                               "group_key": f"datadog:{title}"}
    data.update(kw)
    return Alert.from_dict(data)


ALERTS = [
    alert("checkout users 12 %", service="checkout", dimensions={"users_affected_pct": 12},
          fields={"transition": "Triggered"}),
    alert("checkout no data", service="checkout", fields={"transition": "No Data"}),
    alert("search no data", service="search", fields={"transition": "No Data"}),
    alert("login attack 3 %", service="login", tags=["security:attack"], dimensions={"users_affected_pct": 3},
          fields={"transition": "Triggered"}),
    alert("checkout recovered", service="checkout", state="resolved", fields={"transition": "Recovered"}),
]


def test_only_changed_alerts_are_reported_with_both_decisions() -> None:
    changes = diff_rulesets(ruleset(CURRENT_RULES), ruleset(CANDIDATE_RULES), ALERTS, NOW)
    assert [(c.position, c.alert.title, c.what) for c in changes] == [
        (1, "checkout no data", ("severity", "action", "roles")),
        (3, "login attack 3 %", ("roles",)),
    ]
    no_data, attack = changes
    assert (no_data.before.action, no_data.after.action) == (Action.RECORD, Action.PAGE)
    assert (no_data.before.rule, no_data.after.rule) == ("no-data", "checkout-no-data")
    assert no_data.roles_added == ("Lead",) and no_data.roles_removed == ()
    assert attack.roles_added == ("InfoSec",)
    assert (attack.before.rule, attack.after.rule) == ("datadog", "security-tag")


def test_identical_rulesets_change_nothing() -> None:
    assert diff_rulesets(ruleset(CURRENT_RULES), ruleset(CURRENT_RULES), ALERTS, NOW) == []


def test_role_order_alone_is_not_a_change() -> None:
    swapped = PROCESS.replace("P1: {roles: [Coordinator, Lead]}", "P1: {roles: [Lead, Coordinator]}")
    a = ruleset(CURRENT_RULES)
    b = compile_sources([("process.yaml", swapped), ("rules.yaml", CURRENT_RULES)]).ruleset
    assert diff_rulesets(a, b, ALERTS, NOW) == []


def test_format_changes() -> None:
    changes = diff_rulesets(ruleset(CURRENT_RULES), ruleset(CANDIDATE_RULES), ALERTS, NOW)
    text = format_changes(changes, replayed=len(ALERTS))
    assert text == textwrap.dedent(f"""\
        checkout no data
          source: datadog  received: {NOW.isoformat()}  group: datadog:checkout no data
          severity - -> P2
          action record -> page
          roles added: Lead
          rule no-data -> checkout-no-data

        login attack 3 %
          source: datadog  received: {NOW.isoformat()}  group: datadog:login attack 3 %
          roles added: InfoSec
          rule datadog -> security-tag

        2 of 5 alerts would change (severity 1, action 1, roles 2); 1 would newly page, 0 would stop paging
        """)


def test_format_no_changes() -> None:
    assert format_changes([], replayed=12) == "0 of 12 alerts would change\n"


def test_changes_json() -> None:
    changes = diff_rulesets(ruleset(CURRENT_RULES), ruleset(CANDIDATE_RULES), ALERTS, NOW)
    data = json.loads(changes_json(changes, replayed=5))
    assert (data["replayed"], data["changed"]) == (5, 2)
    first = data["changes"][0]
    assert first["severity"] == {"before": None, "after": "P2"}
    assert first["action"] == {"before": "record", "after": "page"}
    assert first["roles"]["added"] == ["Lead"]
    assert first["rule"] == {"before": "no-data", "after": "checkout-no-data"}
    assert first["changed"] == ["severity", "action", "roles"]


def test_change_to_dict_is_json_safe() -> None:
    for change in diff_rulesets(ruleset(CURRENT_RULES), ruleset(CANDIDATE_RULES), ALERTS, NOW):
        assert isinstance(change, Change)
        assert json.loads(json.dumps(change.to_dict()))["alert"]["source"] == "datadog"


# -- replay sources ---------------------------------------------------------------------------------------------


def test_jsonl_replay_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join([json.dumps(ALERTS[0].to_dict()), "", "   ", json.dumps(ALERTS[1].to_dict()), ""]),
                    encoding="utf-8")
    replayed = list(load_replay(path))
    assert [a.title for a in replayed] == ["checkout users 12 %", "checkout no data"]
    assert replayed[0] == ALERTS[0]


BAD_LINES = [
    ("not-json", "{nope", "alerts.jsonl:3:2: not JSON"),
    ("not-object", "[1, 2]", "alerts.jsonl:3:1: a line must be a JSON object"),
    ("bad-alert", json.dumps({"title": "x", "state": "exploded"}), "alerts.jsonl:3:1: not a normalized alert"),
]


@pytest.mark.parametrize(("line", "error"), [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES])
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_text(json.dumps(ALERTS[0].to_dict()) + "\n\n" + line + "\n", encoding="utf-8")
    stream = load_replay(path)
    assert next(stream).title == ALERTS[0].title
    with pytest.raises(ConfigError) as info:
        next(stream)
    assert str(info.value).startswith(f"{tmp_path}/{error}")


def test_missing_jsonl_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replay file .* not found"):
        load_replay(tmp_path / "nope.jsonl")


def test_database_urls_are_recognised() -> None:
    assert is_database_url("sqlite:///incident-bridge.db")
    assert is_database_url("postgresql+psycopg://u@h/db")
    assert is_database_url("postgres://u@h/db")
    assert not is_database_url("alerts.jsonl")
    assert not is_database_url("/var/lib/bridge/alerts.jsonl")


def test_sqlite_replay_reads_history_in_arrival_order(tmp_path: Path) -> None:
    from bridge.store import Store, alerts

    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    store = Store.open(url)
    with store.transaction() as conn:
        for i, a in enumerate(ALERTS):
            d = a.to_dict()
            conn.execute(sa.insert(alerts).values(
                source=a.source, source_event_id=f"e{i}", received_at=NOW.timestamp() + i, title=a.title,
                state=a.state.value, group_key=a.group_key, dedup_key=a.group_key, action="record",
                outcome="recorded", alert_json=json.dumps(d), decision_json=json.dumps({"action": "record"})))
    replayed = list(load_replay(url))
    assert [a.title for a in replayed] == [a.title for a in ALERTS]


def test_missing_sqlite_database_is_an_error_not_an_empty_replay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no database at"):
        load_replay(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()


# -- end to end: two rule directories, a replay file ---------------------------------------------------------


def test_compare_paths(tmp_path: Path) -> None:
    current = tmp_path / "current"
    candidate = tmp_path / "candidate"
    shutil.copytree(shipped_rules_dir(), current, ignore=shutil.ignore_patterns("cases", "sources", "*.md", "*.py"))
    shutil.copytree(current, candidate)
    # The candidate makes 10 % of users P2 instead of P1.
    severity = candidate / "severity.yaml"
    text = severity.read_text(encoding="utf-8")
    text = text.replace("P1: {gte: 10, lte: 20}\n      P2: {gte: 5, lt: 10}",
                        "P1: {gt: 10, lte: 20}\n      P2: {gte: 5, lte: 10}", 1)
    severity.write_text(text, encoding="utf-8")
    replay = tmp_path / "alerts.jsonl"
    replay.write_text("\n".join(json.dumps(alert(f"users {v} %", dimensions={"users_affected_pct": v}).to_dict())
                                for v in (3, 10, 15)), encoding="utf-8")
    result = compare_paths(current, candidate, replay, NOW)
    assert result.replayed == 3
    assert [(c.alert.title, c.before.severity and c.before.severity.name,
             c.after.severity and c.after.severity.name) for c in result.changes] == [("users 10 %", "P1", "P2")]
    assert result.format().splitlines()[-1] == ("1 of 3 alerts would change (severity 1, action 0, roles 1); "
                                                "0 would newly page, 0 would stop paging")
