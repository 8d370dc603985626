"""`rules test`: case files are validated strictly, run against rules, and reported as text and JUnit XML."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import ConfigErrors
from bridge.model import Action, Decision, Severity
from bridge.rules.loader import shipped_rules_dir
from bridge.ruletools.cases import (
    CaseReport,
    check_expectations,
    format_report,
    junit_xml,
    load_cases,
    run_cases,
)
from tests.support.shared import REPO

RULES = shipped_rules_dir()
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SUMMARY = re.compile(r"^\d+ passed, \d+ failed$")


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str) -> CaseReport:
    return run_cases([write(tmp_path, text)], RULES, now=NOW)


# -- the shipped case file is the CI gate of the shipped rules ------------------------------------------------


def test_shipped_cases_pass() -> None:
    report = run_cases([REPO / "rules" / "cases" / "shipped.yaml"], RULES, now=NOW)
    failed = [r for r in report.results if not r.passed]
    assert not failed, format_report(CaseReport(tuple(failed)))
    assert report.passed >= 50


def test_shipped_cases_cover_every_example_payload() -> None:
    """Each Datadog example the demo replays is a case, through its copy in rules/cases/payloads/ (the same
    bytes: a changed example must change its case too)."""
    cases = load_cases(REPO / "rules" / "cases" / "shipped.yaml")
    used = {c.payload.name: c.payload.read_bytes() for c in cases if c.payload is not None}
    for example in sorted((REPO / "webhooks" / "datadog" / "examples").glob("*.json")):
        copy = f"datadog-{example.name}"
        assert copy in used, f"no shipped case uses {example} (as rules/cases/payloads/{copy})"
        assert used[copy] == example.read_bytes(), f"rules/cases/payloads/{copy} differs from {example}"


def test_shipped_cases_keep_their_payloads_inside_the_rules_directory() -> None:
    rules = (REPO / "rules").resolve()
    for case in load_cases(REPO / "rules" / "cases" / "shipped.yaml"):
        if case.payload is not None:
            assert case.payload.resolve().is_relative_to(rules), f"{case.where}: {case.payload} is outside rules/"


def test_shipped_cases_pass_on_a_copy_of_the_rules_directory_run_from_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team copies rules/ into its own repository and runs `rules test` from wherever CI stands."""
    copy = shutil.copytree(REPO / "rules", tmp_path / "team-config" / "incident-rules")
    elsewhere = tmp_path / "ci-workdir"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = run_cases([copy / "cases" / "shipped.yaml"], copy, now=NOW)
    assert report.ok, format_report(CaseReport(tuple(r for r in report.results if not r.passed)))


def packaged_rules(target: Path) -> Path:
    """What a wheel holds under `bridge/shipped_rules/`: pyproject's package-data globs for the shipped-rules
    packages, applied to their package-dir as setuptools applies them (scripts/smoke-wheel checks a real wheel)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for package, folder in config["package-dir"].items():
        if package != "bridge.shipped_rules" and not package.startswith("bridge.shipped_rules."):
            continue
        inside = target.joinpath(*package.split(".")[2:])
        for pattern in config["package-data"].get(package, []):
            for file in (REPO / folder).glob(pattern):
                destination = inside / file.relative_to(REPO / folder)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, destination)
    return target


def test_shipped_cases_pass_from_the_packaged_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = packaged_rules(tmp_path / "site-packages" / "bridge" / "shipped_rules")
    cases = sorted((installed / "cases").glob("*.yaml"))
    assert [c.name for c in cases] == sorted(p.name for p in (REPO / "rules" / "cases").glob("*.yaml"))
    monkeypatch.chdir(tmp_path)
    report = run_cases(cases, installed, now=NOW)
    assert report.ok, format_report(CaseReport(tuple(r for r in report.results if not r.passed)))
    assert report.passed >= 50


def test_a_payload_is_found_beside_its_case_file_not_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = REPO / "webhooks" / "datadog" / "examples" / "01-checkout-users-triggered.json"
    cases_dir = tmp_path / "rules" / "cases"
    (cases_dir / "payloads").mkdir(parents=True)
    (cases_dir / "payloads" / "p.json").write_bytes(example.read_bytes())
    case_file = write(cases_dir, """
        cases:
          - name: the payload beside the case file
            payload: payloads/p.json
            source: datadog
            expect: {severity: P0}
        """)
    # A payload of the same name under the current directory must not be the one read.
    (tmp_path / "payloads").mkdir()
    (tmp_path / "payloads" / "p.json").write_text("not json", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_cases([case_file], RULES, now=NOW).ok
    (cases_dir / "payloads" / "p.json").unlink()
    with pytest.raises(ConfigErrors) as exc:
        load_cases(case_file)
    message = str(exc.value)
    assert "payload file 'payloads/p.json' not found" in message
    assert str(cases_dir / "payloads" / "p.json") in message and "not to the current directory" in message


# -- running and reporting -------------------------------------------------------------------------------------

PASSING_AND_FAILING = """
    cases:
      - name: users 12 % is P1
        alert: {source: datadog, title: checkout, dimensions: {users_affected_pct: 12}}
        expect: {severity: P1, action: page, urgency: high}
      - name: wrong on purpose
        alert: {source: datadog, title: checkout, dimensions: {users_affected_pct: 12}}
        expect: {severity: P2, roles: [Technical Lead], reasons_include: [no such reason]}
    """


def test_report_text(tmp_path: Path) -> None:
    report = run(tmp_path, PASSING_AND_FAILING)
    assert (report.passed, report.failed, report.ok) == (1, 1, False)
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0] == "PASS users 12 % is P1"
    assert lines[1] == f"FAIL wrong on purpose  ({tmp_path / 'cases.yaml'}:5)"
    assert "    severity: expected P2, got P1" in lines
    assert "    reasons_include: no reason contains 'no such reason'" in lines
    assert "      + unexpected: Incident Coordinator, Infrastructure Lead, Communications Lead, Customer Support" \
        in lines
    assert lines[-1] == "1 passed, 1 failed"
    assert SUMMARY.match(lines[-1])


def test_junit_xml(tmp_path: Path) -> None:
    report = run(tmp_path, PASSING_AND_FAILING)
    root = ET.fromstring(junit_xml(report))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["users 12 % is P1", "wrong on purpose"]
    assert {c.get("classname") for c in cases} == {str(tmp_path / "cases.yaml")}
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("severity: expected P2, got P1\nroles: expected [Technical Lead]")
    assert "decision: page P1" in (failure.text or "")


def test_all_passing_report_is_ok(tmp_path: Path) -> None:
    report = run(tmp_path, """
        cases:
          - name: p0
            alert: {source: datadog, title: x, dimensions: {customers_affected_pct: 30}}
            expect:
              severity: P0
              roles_include: [Customer Success, Customer Support]
              roles_exclude: [InfoSec]
              suppressed: false
        """)
    assert report.ok and format_report(report).splitlines()[-1] == "1 passed, 0 failed"


def test_fields_booleans_compare_like_the_receivers_write_them(tmp_path: Path) -> None:
    # YAML reads `routine: true` as a boolean; the receivers write "true", and the shipped rule matches "true".
    report = run(tmp_path, """
        cases:
          - name: routine report
            alert: {source: gcp-pubsub, title: r, categories: [cloud_cost], fields: {routine: true}}
            expect: {action: record, rule: cloud-cost-budget-routine}
        """)
    assert report.ok, format_report(report)


def test_merge_keys_vary_one_alert(tmp_path: Path) -> None:
    report = run(tmp_path, """
        cases:
          - name: base
            alert: &a {source: datadog, title: x, service: checkout, dimensions: {users_affected_pct: 3}}
            expect: {severity: P3}
          - name: varied
            alert: {<<: *a, dimensions: {users_affected_pct: 30}}
            expect: {severity: P0}
        """)
    assert report.ok, format_report(report)


def test_payload_case_with_a_datadog_example(tmp_path: Path) -> None:
    example = REPO / "webhooks" / "datadog" / "examples" / "01-checkout-users-triggered.json"
    (tmp_path / "payloads").mkdir()
    (tmp_path / "payloads" / "p.json").write_bytes(example.read_bytes())
    report = run(tmp_path, """
        cases:
          - name: raw datadog
            payload: payloads/p.json
            source: datadog
            expect: {severity: P0, rule: datadog-monitor}
        """)
    assert report.ok, format_report(report)


ALERTMANAGER = {
    "version": "4", "status": "firing", "receiver": "bridge", "groupKey": "{}:{alertname=\"CheckoutErrors\"}",
    "commonLabels": {}, "commonAnnotations": {}, "groupLabels": {}, "externalURL": "http://am", "truncatedAlerts": 0,
    "alerts": [
        {"status": "firing", "labels": {"alertname": "CheckoutErrors", "dimension": "users_affected_pct"},
         "annotations": {"summary": "15 % of checkout users see errors", "value": "15"},
         "startsAt": "2026-01-02T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "a1",
         "generatorURL": "http://prom"},
        {"status": "firing", "labels": {"alertname": "CheckoutErrors", "dimension": "users_affected_pct"},
         "annotations": {"summary": "25 % of checkout users see errors", "value": "25"},
         "startsAt": "2026-01-02T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "b2",
         "generatorURL": "http://prom"},
    ],
}


def test_payload_with_several_alerts_checks_each_or_one(tmp_path: Path) -> None:
    (tmp_path / "am.json").write_text(json.dumps(ALERTMANAGER), encoding="utf-8")
    report = run(tmp_path, """
        cases:
          - name: every alert pages
            payload: am.json
            source: alertmanager
            expect: {action: page}
          - name: every alert is P1 (wrong for the second)
            payload: am.json
            source: alertmanager
            expect: {severity: P1}
          - name: the second alert is P0
            payload: am.json
            source: alertmanager
            alert_index: 1
            expect: {severity: P0}
          - name: out of range
            payload: am.json
            source: alertmanager
            alert_index: 2
            expect: {severity: P0}
        """)
    assert [r.passed for r in report.results] == [True, False, True, False]
    assert report.results[1].mismatch_text == "alert[1] severity: expected P1, got P0"
    assert report.results[3].error == "alert_index 2 is out of range: the payload holds 2 alert(s)"


def test_payload_the_receiver_refuses_is_a_failed_case(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    report = run(tmp_path, """
        cases:
          - name: broken payload
            payload: bad.json
            source: datadog
            expect: {severity: P0}
        """)
    assert report.failed == 1
    assert (report.results[0].error or "").startswith("cannot read the input: ")
    assert "FAIL broken payload" in format_report(report)


def test_unknown_source_is_a_case_file_error(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("{}", encoding="utf-8")
    path = write(tmp_path, """
        cases:
          - name: x
            payload: p.json
            source: datdog
            expect: {severity: P0}
        """)
    with pytest.raises(ConfigErrors) as info:
        run_cases([path], RULES, now=NOW)
    assert str(info.value).startswith(f"{path}:4:13: unknown source 'datdog'; known: ")


# -- expectations, one key at a time ---------------------------------------------------------------------------

DECISION = Decision(action=Action.PAGE, severity=Severity.P1, rule="datadog-monitor", urgency="high",
                    roles=("Incident Coordinator", "Technical Lead"), categories=frozenset({"security"}),
                    reasons=("users_affected_pct = 12 is P1 (>= 10 and <= 20)",), group_key="g",
                    pending_seconds=300, repage_seconds=1800)

EXPECTATIONS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("all-met", {"severity": "P1", "action": "page", "rule": "datadog-monitor", "urgency": "high",
                 "roles": ["Technical Lead", "Incident Coordinator"], "roles_include": ["Technical Lead"],
                 "roles_exclude": ["InfoSec"], "suppressed": False, "categories_include": ["security"],
                 "reasons_include": ["is P1"], "group_key": "g", "pending": 300, "repage_after": 1800}, []),
    ("severity", {"severity": "P0"}, ["severity: expected P0, got P1"]),
    ("severity-null", {"severity": None}, ["severity: expected null, got P1"]),
    ("action", {"action": "record"}, ["action: expected record, got page"]),
    ("rule", {"rule": "other"}, ["rule: expected other, got datadog-monitor"]),
    ("urgency", {"urgency": "low"}, ["urgency: expected low, got high"]),
    ("roles", {"roles": ["Technical Lead", "InfoSec"]},
     ["roles: expected [InfoSec, Technical Lead], got [Incident Coordinator, Technical Lead]",
      "  - missing: InfoSec", "  + unexpected: Incident Coordinator"]),
    ("roles-include", {"roles_include": ["InfoSec"]},
     ["roles_include: missing InfoSec (roles: [Incident Coordinator, Technical Lead])"]),
    ("roles-exclude", {"roles_exclude": ["Technical Lead"]},
     ["roles_exclude: unexpected Technical Lead (roles: [Incident Coordinator, Technical Lead])"]),
    ("suppressed", {"suppressed": True}, ["suppressed: expected true, got false (action page)"]),
    ("categories", {"categories_include": ["breach"]}, ["categories_include: missing breach (categories: [security])"]),
    ("reasons", {"reasons_include": ["is P1", "capped"]}, ["reasons_include: no reason contains 'capped'"]),
    ("group-key", {"group_key": "h"}, ["group_key: expected h, got g"]),
    ("pending", {"pending": 60}, ["pending: expected 60s, got 300s"]),
    ("repage", {"repage_after": 60}, ["repage_after: expected 60s, got 1800s"]),
]


@pytest.mark.parametrize(("expect", "diff"), [e[1:] for e in EXPECTATIONS], ids=[e[0] for e in EXPECTATIONS])
def test_expectation(expect: dict[str, Any], diff: list[str]) -> None:
    assert [line for m in check_expectations(expect, DECISION) for line in m.diff] == diff


# -- strict validation of case files ---------------------------------------------------------------------------

INVALID: list[tuple[str, str, list[str]]] = [
    ("no-cases", "description: x\n",
     ["1:1: a case file must be a mapping with a `cases:` list"]),
    ("empty-cases", "cases: []\n", ["1:8: `cases` must be a non-empty list"]),
    ("unknown-top-key", "cases:\n  - {name: a, alert: {title: x}, expect: {action: page}}\ncase: 1\n",
     ["3:1: unknown top-level key 'case' (fix: allowed keys here: cases, description)"]),
    ("unknown-case-key", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {action: page}\n    exepct: {}\n",
     ["5:5: unknown case key 'exepct'"]),
    ("no-name", "cases:\n  - alert: {title: x}\n    expect: {action: page}\n",
     ["2:5: a case needs a `name`"]),
    ("duplicate-name", "cases:\n  - {name: a, alert: {title: x}, expect: {action: page}}\n"
     "  - {name: a, alert: {title: y}, expect: {action: page}}\n",
     ["3:12: duplicate case name 'a' (first at line 2)"]),
    ("no-input", "cases:\n  - name: a\n    expect: {action: page}\n", ["2:5: case 'a' has no input"]),
    ("both-inputs", "cases:\n  - name: a\n    alert: {title: x}\n    payload: p.json\n    source: datadog\n"
     "    expect: {action: page}\n", ["4:5: a case has either `alert:` or `payload:`, not both"]),
    ("payload-missing", "cases:\n  - name: a\n    payload: nope.json\n    source: datadog\n"
     "    expect: {action: page}\n",
     ["3:14: payload file 'nope.json' not found"]),
    ("payload-without-source", "cases:\n  - name: a\n    payload: p.json\n    expect: {action: page}\n",
     ["2:5: a `payload:` case needs `source:`"]),
    ("source-with-alert", "cases:\n  - name: a\n    alert: {title: x}\n    source: datadog\n"
     "    expect: {action: page}\n",
     ["4:5: `source` goes with `payload:`"]),
    ("unknown-alert-key", "cases:\n  - name: a\n    alert: {title: x, dimension: {users_affected_pct: 3}}\n"
     "    expect: {action: page}\n", ["3:23: unknown alert key 'dimension'"]),
    ("dimension-not-number", "cases:\n  - name: a\n    alert: {dimensions: {users_affected_pct: high}}\n"
     "    expect: {action: page}\n", ["3:46: dimension users_affected_pct must be a number, not 'high'"]),
    ("bad-state", "cases:\n  - name: a\n    alert: {state: ok}\n    expect: {action: page}\n",
     ["3:20: state must be firing or resolved, not 'ok'"]),
    ("unknown-cost-key", "cases:\n  - name: a\n    alert: {cost: {amount: 5}}\n    expect: {action: page}\n",
     ["3:20: unknown cost key 'amount'"]),
    ("no-expect", "cases:\n  - name: a\n    alert: {title: x}\n", ["2:5: a case needs `expect:`"]),
    ("unknown-expect-key", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {sevrity: P1}\n",
     ["4:14: unknown expect key 'sevrity'"]),
    ("bad-severity", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {severity: P5}\n",
     ["4:24: severity must be P0, P1, P2, P3 or null, not 'P5'"]),
    ("bad-action", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {action: paged}\n",
     ["4:22: action must be one of page, resolve, record, suppress, not 'paged'"]),
    ("roles-not-list", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {roles: InfoSec}\n",
     ["4:21: roles must be a list of strings"]),
    ("suppressed-not-bool", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {suppressed: yes please}\n",
     ["4:26: suppressed must be true or false"]),
    ("bad-duration", "cases:\n  - name: a\n    alert: {title: x}\n    expect: {pending: 5 min}\n",
     ["4:23: '5 min' is not a duration"]),
    ("alert-index-negative", "cases:\n  - name: a\n    payload: p.json\n    source: datadog\n    alert_index: -1\n"
     "    expect: {action: page}\n", ["5:18: alert_index must be a whole number >= 0"]),
    ("yaml-syntax", "cases:\n  - name: a\n    alert: {title: x\n    expect: {action: page}\n",
     ["4:11: YAML syntax error"]),
]


@pytest.mark.parametrize(("text", "errors"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_case_file(tmp_path: Path, text: str, errors: list[str]) -> None:
    (tmp_path / "p.json").write_text("{}", encoding="utf-8")
    path = tmp_path / "cases.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_cases(path)
    actual = [str(e) for e in info.value.errors]
    assert len(actual) == len(errors), actual
    for got, want in zip(actual, errors, strict=True):
        assert got.startswith(f"{path}:{want}"), got


def test_every_case_file_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        cases:
          - name: a
            alert: {title: x}
            expect: {severity: P9}
          - name: b
            alert: {title: y, colour: red}
            expect: {action: paged}
        """)
    with pytest.raises(ConfigErrors) as info:
        run_cases([path], RULES, now=NOW)
    assert len(info.value.errors) == 3
