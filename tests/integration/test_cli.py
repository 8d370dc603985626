"""The command line through its real entry point (the `incident-bridge` console script), as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.model import Alert, AlertState
from bridge.pipeline.silences.admin import create_silence
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.loader import load_ruleset
from bridge.store import Store
from tests.support.server import REPO, bridge_env
from tests.support.shared import copy_shipped_rules

EXAMPLES = REPO / "webhooks" / "datadog" / "examples"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    script = shutil.which("incident-bridge")
    cmd = [script] if script else [sys.executable, "-m", "bridge"]
    return subprocess.run([*cmd, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return bridge_env(tmp_path)


def copy_rules(tmp_path: Path, name: str = "rules") -> Path:
    return copy_shipped_rules(tmp_path / name)


def test_lint_clean_and_with_errors(tmp_path: Path, env: dict[str, str]) -> None:
    ok = cli("rules", "lint", str(REPO / "rules"), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok: ")
    bad = copy_rules(tmp_path)
    routing = (bad / "routing.yaml").read_text()
    (bad / "routing.yaml").write_text(routing.replace("dimension: cloud_cost_increase_pct",
                                                      "dimension: cloud_costs_pct", 1))
    result = cli("rules", "lint", str(bad), env=env)
    assert result.returncode == 1
    line = next(ln for ln in result.stdout.splitlines() if "cloud_costs_pct" in ln)
    assert "routing.yaml:" in line and "unknown dimension" in line and "fix:" in line
    file_line_col = line.split(": ", 2)[1]
    assert file_line_col.count(":") == 2  # file:line:column
    assert "Traceback" not in result.stdout + result.stderr


def test_lint_names_a_regex_re2_refuses_with_its_position_and_fix(tmp_path: Path, env: dict[str, str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "routing.yaml").write_text(
        "rules:\n"
        "  - name: checkout-not-canary\n"
        "    match:\n"
        "      service: {regex: '^checkout(?!-canary)'}\n"
        "    severity: P2\n", encoding="utf-8")
    result = cli("rules", "lint", str(rules), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{rules / 'routing.yaml'}:4:24: invalid regular expression '^checkout(?!-canary)': lookahead (?!...) " \
           "is not supported (RE2 syntax) (fix: match the text itself, or move what must not be there into a " \
           "separate condition (not_regex in rules, !~ in silences))" in result.stdout


def test_rules_test_passes_the_shipped_cases_and_writes_junit(tmp_path: Path, env: dict[str, str]) -> None:
    junit = tmp_path / "junit.xml"
    result = cli("rules", "test", str(REPO / "rules" / "cases" / "shipped.yaml"), "--junit", str(junit), env=env)
    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().splitlines()[-1].endswith("passed, 0 failed")
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures") or suite[0].get("failures") or 0) == 0


def test_rules_test_reports_a_failure_with_a_diff(tmp_path: Path, env: dict[str, str]) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("""cases:
  - name: ten percent of users is P1
    alert:
      source: datadog
      title: Checkout failing
      dimensions: {users_affected_pct: 10}
    expect:
      severity: P2
      action: page
""")
    result = cli("rules", "test", str(cases), "--rules", str(REPO / "rules"), env=env)
    assert result.returncode == 1
    assert "FAIL ten percent of users is P1" in result.stdout
    assert "P2" in result.stdout and "P1" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "0 passed, 1 failed"


def test_explain_json_on_a_raw_payload(env: dict[str, str]) -> None:
    result = cli("rules", "explain", "--source", "datadog", str(EXAMPLES / "01-checkout-users-triggered.json"),
                 "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["severity"] == "P0" and data["action"] == "page" and data["rule"] == "datadog-monitor"
    assert "Incident Coordinator" in data["roles"]
    assert any("users_affected_pct" in r for r in data["reasons"])
    no_data = json.loads(cli("rules", "explain", "--source", "datadog", str(EXAMPLES / "04-payments-api-no-data.json"),
                             "--json", env=env).stdout)
    assert no_data["severity"] is None and no_data["action"] == "record" and no_data["why_not_paged"]


def test_explain_on_garbage_says_what_is_wrong(tmp_path: Path, env: dict[str, str]) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = cli("rules", "explain", "--source", "datadog", str(garbage), env=env)
    assert result.returncode != 0
    assert "garbage.json" in result.stderr and "Traceback" not in result.stderr
    unknown = cli("rules", "explain", "--source", "nagios", str(garbage), env=env)
    assert unknown.returncode != 0 and "unknown source 'nagios'" in unknown.stderr


def test_diff_prints_alerts_whose_decision_would_change(tmp_path: Path, env: dict[str, str]) -> None:
    candidate = copy_rules(tmp_path, "candidate")
    sev = (candidate / "severity.yaml").read_text()
    (candidate / "severity.yaml").write_text(sev.replace("P0: {gt: 20}", "P0: {gt: 30}", 1)
                                             .replace("P1: {gte: 10, lte: 20}", "P1: {gte: 10, lte: 30}", 1))
    replay = tmp_path / "alerts.jsonl"
    lines = []
    for i, value in enumerate((27.4, 50.0, 3.0)):
        lines.append(json.dumps({"source": "datadog", "source_event_id": str(i), "title": f"checkout {value}",
                                 "dimensions": {"users_affected_pct": value}}))
    replay.write_text("\n".join(lines) + "\n")
    result = cli("rules", "diff", "--against", str(candidate), "--rules", str(REPO / "rules"), "--replay",
                 str(replay), env=env)
    assert result.returncode == 0, result.stderr
    assert "checkout 27.4" in result.stdout and "P0 -> P1" in result.stdout
    assert "checkout 50.0" not in result.stdout and "checkout 3.0" not in result.stdout
    as_json = json.loads(cli("rules", "diff", "--against", str(candidate), "--rules", str(REPO / "rules"),
                             "--replay", str(replay), "--json", env=env).stdout)
    assert len(as_json["changes"]) == 1
    gate = cli("rules", "diff", "--against", str(candidate), "--rules", str(REPO / "rules"), "--replay",
               str(replay), "--exit-code", env=env)
    assert gate.returncode == 1


def test_silences_from_the_command_line(env: dict[str, str]) -> None:
    added = cli("silence", "add", "-m", "service=checkout", "-m", "tag:env=prod", "--owner", "alice@example.com",
                "--reason", "DB failover drill", "--duration", "2h", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence 1 added")
    recurring = cli("silence", "add", "-m", "service=batch", "--owner", "bob", "--reason", "weekly maintenance",
                    "--days", "sun", "--from", "02:00", "--to", "04:00", "--tz", "Europe/Berlin", "--end", "+30d",
                    env=env)
    assert recurring.returncode == 0, recurring.stderr
    listed = json.loads(cli("silence", "list", "--json", env=env).stdout)
    assert [s["owner"] for s in listed] == ["alice@example.com", "bob"]
    assert listed[1]["recurrence"]["timezone"] == "Europe/Berlin" and listed[1]["next_window_start"]
    no_end = cli("silence", "add", "-m", "service=x", "--owner", "a", "--reason", "r", env=env)
    assert no_end.returncode != 0 and "ends_at" in no_end.stderr and "Traceback" not in no_end.stderr
    bad_matcher = cli("silence", "add", "-m", "env=prod", "--owner", "a", "--reason", "r", "--duration", "1h",
                      env=env)
    assert bad_matcher.returncode != 0 and "for a tag write tag:env=" in bad_matcher.stderr
    not_re2 = cli("silence", "add", "-m", "title=~^DB (?=primary)", "--owner", "a", "--reason", "r", "--duration",
                  "1h", env=env)
    assert not_re2.returncode != 0 and "Traceback" not in not_re2.stderr
    assert "matchers[0]: invalid regular expression '^DB (?=primary)' for title: lookahead (?=...) is not " \
           "supported (RE2 syntax)" in not_re2.stderr
    expired = cli("silence", "expire", "1", env=env)
    assert expired.returncode == 0
    assert [s["id"] for s in json.loads(cli("silence", "list", "--json", env=env).stdout)] == [2]
    missing = cli("silence", "expire", "99", env=env)
    assert missing.returncode != 0 and "no silence 99" in missing.stderr


def test_postmortem_and_related_of_an_unknown_incident_fail_clearly(env: dict[str, str]) -> None:
    Store.open(env["BRIDGE_DATABASE_URL"]).engine.dispose()  # a bridge's database, without that incident
    for args in (("postmortem", "nope"), ("related", "nope")):
        result = cli(*args, env=env)
        assert result.returncode != 0
        assert "no incident 'nope'" in result.stderr and "Traceback" not in result.stderr


READ_ONLY = [
    ("incidents",),
    ("alerts",),
    ("alerts", "--why", "1"),
    ("silence", "list"),
    ("silence", "expire", "1"),
    ("related", "1"),
    ("postmortem", "1"),
    ("rules", "diff", "--against", str(REPO / "rules")),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda args: "-".join(args[:2]).replace("--", ""))
def test_a_read_only_command_in_an_empty_directory_creates_no_database(tmp_path: Path, env: dict[str, str],
                                                                      args: tuple[str, ...]) -> None:
    env.pop("BRIDGE_DATABASE_URL")  # the default, sqlite:///incident-bridge.db, in the working directory
    result = cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ("incident-bridge: no database at incident-bridge.db (BRIDGE_DATABASE_URL); start the "
                             "bridge first or point BRIDGE_DATABASE_URL at its database\n")
    assert list(tmp_path.iterdir()) == []


def test_rules_diff_names_the_replay_option_it_read(tmp_path: Path, env: dict[str, str]) -> None:
    result = cli("rules", "diff", "--against", str(REPO / "rules"), "--replay", f"sqlite:///{tmp_path / 'typo.db'}",
                 env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"incident-bridge: no database at {tmp_path / 'typo.db'} (--replay); start the bridge "
                             "first or point --replay at its database\n")
    assert list(tmp_path.iterdir()) == []


def test_alerts_lists_and_tells_why_one_was_not_paged(env: dict[str, str]) -> None:
    store = Store.open(env["BRIDGE_DATABASE_URL"])
    ruleset = load_ruleset(REPO / "rules").ruleset
    now = datetime.now(UTC)
    create_silence(store, {"matchers": ["service=checkout"], "owner": "alice@example.com", "reason": "DB drill",
                           "duration": "2h"}, now, actor="cli:bob@host")
    alert = Alert(source="datadog", source_event_id="1", received_at=now, title="checkout errors",
                  state=AlertState.FIRING, group_key="g1", service="checkout", dimensions={"users_affected_pct": 30})
    accept_and_decide(store, [(alert, evaluate(alert, ruleset, now))], [], now, ruleset)
    store.engine.dispose()

    listed = cli("alerts", env=env)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split()[0] == "1" and "suppressed" in line and "checkout errors" in line
    why = cli("alerts", "--why", "1", env=env)
    assert why.returncode == 0, why.stderr
    lines = why.stdout.splitlines()
    assert lines[0].startswith("alert 1: checkout errors  [datadog, firing, received ")
    assert lines[1].startswith("verdict: not paged: silenced by silence 1 (alice@example.com: DB drill), until ")
    assert lines[2].startswith("decision: suppress P0 by rule datadog-monitor, urgency high, roles Incident "
                               "Coordinator")
    # No bridge ran on this database, so no ruleset load was recorded: the current rules, whose hash is the one the
    # alert was decided with.
    assert lines[3] == f"  rules: explained with ruleset {ruleset.hash}, the one it was decided with"
    assert "  dimensions: users_affected_pct=30" in lines and "  thresholds crossed: users_affected_pct: P0 (> 20)" \
        in lines
    assert any(ln.startswith("silence: 1 owned by alice@example.com (DB drill), service=checkout, until ")
               and ln.endswith("; created by cli:bob@host") for ln in lines)
    story = json.loads(cli("alerts", "--why", "1", "--json", env=env).stdout)
    assert story["paged"] is False and story["silence"]["created_by"] == "cli:bob@host"
    assert story["story"] == lines
    unknown = cli("alerts", "--why", "99", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Error: no alert 99 in sqlite:///") and len(unknown.stderr.splitlines()) == 1
