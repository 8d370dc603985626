"""The loader: golden bad rule files with their exact messages, the shipped rules, and the JSON Schema.

Golden files live in tests/golden/rules-bad/: `<name>.yaml` and `<name>.expected`, the exact `str(error)` of
every error, one per line, as `incident-bridge rules lint <name>.yaml` prints them (without `error: `) from the
repository root. After changing a message on purpose, regenerate them with

    UPDATE_GOLDEN=1 python -m pytest tests/unit/test_rules_loader.py

and review the diff of the .expected files like code.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.errors import ConfigErrors
from bridge.model import Severity
from bridge.rules.loader import compile_sources, load_ruleset, parse_duration, schema, shipped_rules_dir

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "rules-bad"
BAD_FILES = sorted(GOLDEN.glob("*.yaml"))


def lint_output(path: Path) -> str:
    """Every error of one rule file, one `str(error)` per line, named as from the repository root."""
    display = path.relative_to(REPO).as_posix()
    try:
        compile_sources([(display, path.read_text(encoding="utf-8"))])
    except ConfigErrors as exc:
        return "".join(f"{e}\n" for e in exc.errors)
    return ""


def test_there_are_golden_bad_files() -> None:
    assert len(BAD_FILES) >= 16


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_golden_bad_file(path: Path) -> None:
    actual = lint_output(path)
    assert actual, f"{path.name} loaded without errors: it must be rejected"
    expected_file = path.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual, encoding="utf-8")
    assert expected_file.exists(), f"missing {expected_file.name}; run with UPDATE_GOLDEN=1 to create it"
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_every_golden_error_has_a_position_and_a_fix(path: Path) -> None:
    for line in lint_output(path).splitlines():
        assert line.startswith(f"tests/golden/rules-bad/{path.name}:"), line
        location = line.split(": ", 1)[0]
        assert len(location.split(":")) == 3, f"no line:column in {line!r}"
        assert "(fix: " in line, f"no fix hint in {line!r}"


# -- small cases not worth a golden file -------------------------------------------------------------------


def compile_text(text: str) -> list[str]:
    """Errors of one rule file given as text (empty when it is valid)."""
    try:
        compile_sources([("t.yaml", textwrap.dedent(text))])
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    return []


def test_schema_errors_are_all_reported_in_one_pass() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {service: x}
            severty: P1
          - name: b
            match: {service: y}
            severity: P5
            pending: 1w
        """)
    assert sorted(e.split(": ", 1)[0] for e in errors) == ["t.yaml:4:5", "t.yaml:7:15", "t.yaml:8:14"]


def test_semantic_errors_are_all_reported_together() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {title: {regex: "^a"}}
          - name: b
            match: {service: x}
            floor: P2
            cap: P3
          - name: b
            match: {service: y}
        dimensions:
          d:
            thresholds: {P0: {gt: 10}, P1: {gt: 1, lt: 5}}
        """)
    assert sorted(e.split(": ", 1)[0] for e in errors) == ["t.yaml:12:22", "t.yaml:6:12", "t.yaml:8:11"]


@pytest.mark.xfail(strict=True, reason="loader bug: a rule whose regex failed to compile is treated as a "
                   "catch-all and reported as shadowing every later rule (see the rules report)")
def test_invalid_regex_does_not_cascade_into_shadowing_errors() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {title: {regex: "("}}
          - name: b
            match: {service: x}
        """)
    assert [e.split(": ", 1)[0] for e in errors] == ["t.yaml:3:28"]


def test_shared_boundary_is_a_warning_and_the_higher_severity_wins() -> None:
    result = compile_sources([("t.yaml", textwrap.dedent("""\
        dimensions:
          users_affected_pct:
            thresholds:
              P1: {gte: 10, lte: 20}
              P2: {gte: 5, lte: 10}
        """))])
    assert [str(w) for w in result.warnings] == [
        "t.yaml:4:11: users_affected_pct: P2 and P1 both include 10; the higher severity (P1) wins there "
        "(fix: make one bound exclusive to say so explicitly)"]
    assert result.ruleset.dimensions["users_affected_pct"].severity_for(10)[0] is Severity.P1


def test_undeclared_category_is_a_warning() -> None:
    result = compile_sources([("t.yaml", "rules:\n  - name: r\n    match: {service: x}\n    categories: [sekurity]\n")])
    assert [w.message for w in result.warnings] == ["category 'sekurity' is not declared under `categories:`"]


def test_shadowing_ignores_earlier_rules_with_continue() -> None:
    assert compile_text("""\
        rules:
          - name: everything
            categories: [security]
            continue: true
          - name: checkout
            match: {service: checkout}
        """) == []


def test_rules_from_several_files_keep_file_order_and_positions() -> None:
    rs = compile_sources([("a.yaml", "rules:\n  - name: a\n    match: {service: a}\n"),
                          ("b.yaml", "version: 1\nrules:\n  - name: b\n    match: {service: b}\n")]).ruleset
    assert [(r.name, r.index, r.where) for r in rs.rules] == [("a", 0, "a.yaml:2"), ("b", 1, "b.yaml:3")]


def test_missing_rules_path_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_ruleset(tmp_path / "nope")
    assert "does not exist" in str(info.value) and "BRIDGE_RULES" in str(info.value)
    with pytest.raises(ConfigErrors, match="no rule files"):
        load_ruleset(tmp_path)


DURATIONS = [(90, 90), ("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), (" 10m ", 600)]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[str(t) for t, _ in DURATIONS])
def test_parse_duration(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1w", "", "m", True, "-5m"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- the shipped rules and the schema -------------------------------------------------------------------------

SHIPPED_FILES = sorted(shipped_rules_dir().glob("*.yaml"))


def test_shipped_rules_lint_clean() -> None:
    result = load_ruleset(shipped_rules_dir())
    assert [str(w) for w in result.warnings] == []
    rs = result.ruleset
    assert set(rs.dimensions) == {"users_affected_pct", "cloud_cost_increase_pct", "customers_affected_pct"}
    assert rs.rules and rs.roles and rs.paging.levels


def test_shipped_rule_files_start_with_the_editor_modeline() -> None:
    for path in SHIPPED_FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=./schema.json", path.name


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.name for p in SHIPPED_FILES])
def test_schema_accepts_every_shipped_rules_file(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema(),
                        cls=jsonschema.Draft7Validator)


SCHEMA_REJECTS = ["unknown-top-level-key", "unknown-rule-key", "bad-severity", "bad-duration", "unknown-matcher-op",
                  "matcher-list-value", "not-a-mapping"]


@pytest.mark.parametrize("name", SCHEMA_REJECTS)
def test_schema_rejects_bad_files(name: str) -> None:
    data = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema(), cls=jsonschema.Draft7Validator)
